-- Faster dashboard reads at tens of millions of events: the arms view's
-- latest-hour lookup, the first and last minute of an experiment, and hourly
-- variant rows for time series over days.
CREATE INDEX analytics_item_hours_by_hour ON analytics_item_hours (experiment_id, hour);
CREATE INDEX analytics_variant_minutes_by_minute
    ON analytics_variant_minutes (experiment_id, minute);

CREATE TABLE analytics_variant_hours (
    experiment_id    text             NOT NULL,
    variant          text             NOT NULL,
    hour             timestamptz      NOT NULL,
    serves           bigint           NOT NULL DEFAULT 0,
    errors           bigint           NOT NULL DEFAULT 0,
    within_sla       bigint           NOT NULL DEFAULT 0,
    latency_sum_ms   double precision NOT NULL DEFAULT 0,
    latency_buckets  bigint[]         NOT NULL DEFAULT '{}',
    outcomes         bigint           NOT NULL DEFAULT 0,
    rewards          double precision NOT NULL DEFAULT 0,
    late_clicks      bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant, hour)
);

-- Hourly rows for what was ingested before this table existed.
INSERT INTO analytics_variant_hours
SELECT g.experiment_id, g.variant, g.hour, sum(g.serves), sum(g.errors), sum(g.within_sla),
    sum(g.latency_sum_ms),
    coalesce((
        SELECT array_agg(b.total ORDER BY b.i) FROM (
            SELECT u.i, sum(u.count)::bigint AS total
            FROM analytics_variant_minutes m,
                 unnest(m.latency_buckets) WITH ORDINALITY AS u(count, i)
            WHERE m.experiment_id = g.experiment_id AND m.variant = g.variant
              AND date_trunc('hour', m.minute) = g.hour
            GROUP BY u.i
        ) b
    ), '{}'),
    sum(g.outcomes), sum(g.rewards), sum(g.late_clicks)
FROM (SELECT *, date_trunc('hour', minute) AS hour FROM analytics_variant_minutes) g
GROUP BY g.experiment_id, g.variant, g.hour;
