-- Analytics: raw events (partitioned by day of event time, partitions made on
-- demand by the ingest and dropped after the retention) and the aggregates the
-- dashboard reads, maintained in the same transaction as the raw insert, from
-- the rows that insert actually added (so a redelivered event counts once).

CREATE TABLE analytics_serves (
    serve_id       text             NOT NULL,
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    policy_type    text             NOT NULL,
    user_id        text             NOT NULL,
    cohort         jsonb            NOT NULL,
    item_ids       bigint[]         NOT NULL,
    propensities   double precision[] NOT NULL,
    state_version  bigint           NOT NULL,
    latency_ms     double precision NOT NULL,
    status         text             NOT NULL,
    served_at      timestamptz      NOT NULL,
    PRIMARY KEY (serve_id, served_at)
) PARTITION BY RANGE (served_at);
CREATE INDEX analytics_serves_by_experiment ON analytics_serves (experiment_id, served_at, serve_id);

-- One row per served item's outcome (a reward message carries one or more).
CREATE TABLE analytics_rewards (
    reward_id      text             NOT NULL,
    serve_id       text             NOT NULL,
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    policy_type    text             NOT NULL,
    item_id        bigint           NOT NULL,
    position       integer          NOT NULL,
    propensity     double precision NOT NULL,
    reward         double precision NOT NULL,
    user_id        text,
    cohort         jsonb            NOT NULL,
    served_at      timestamptz      NOT NULL,
    rewarded_at    timestamptz      NOT NULL,
    PRIMARY KEY (reward_id, served_at)
) PARTITION BY RANGE (served_at);
CREATE INDEX analytics_rewards_by_experiment
    ON analytics_rewards (experiment_id, rewarded_at, reward_id);

-- Every click as received (clicks carry no experiment: the rewards say which counted).
CREATE TABLE analytics_clicks (
    event_id    text        NOT NULL,
    serve_id    text        NOT NULL,
    item_id     bigint      NOT NULL,
    user_id     text        NOT NULL,
    clicked_at  timestamptz NOT NULL,
    PRIMARY KEY (event_id, clicked_at)
) PARTITION BY RANGE (clicked_at);
CREATE INDEX analytics_clicks_by_serve ON analytics_clicks (serve_id);

CREATE TABLE analytics_late_clicks (
    event_id          text        NOT NULL,
    serve_id          text        NOT NULL,
    experiment_id     text,
    variant           text,
    item_id           bigint      NOT NULL,
    user_id           text        NOT NULL,
    clicked_at        timestamptz NOT NULL,
    window_closed_at  timestamptz,
    PRIMARY KEY (event_id, clicked_at)
) PARTITION BY RANGE (clicked_at);
CREATE INDEX analytics_late_clicks_by_experiment
    ON analytics_late_clicks (experiment_id, clicked_at, event_id);

-- Per experiment, variant and minute of serve time: traffic, latency, outcomes.
-- latency_buckets[i] counts serves with latency in the i-th bucket of
-- cineamate.common.latency.BUCKET_BOUNDS_MS (the last one is open-ended).
CREATE TABLE analytics_variant_minutes (
    experiment_id    text             NOT NULL,
    variant          text             NOT NULL,
    minute           timestamptz      NOT NULL,
    serves           bigint           NOT NULL DEFAULT 0,
    errors           bigint           NOT NULL DEFAULT 0,
    within_sla       bigint           NOT NULL DEFAULT 0,
    latency_sum_ms   double precision NOT NULL DEFAULT 0,
    latency_buckets  bigint[]         NOT NULL DEFAULT '{}',
    outcomes         bigint           NOT NULL DEFAULT 0,
    rewards          double precision NOT NULL DEFAULT 0,
    late_clicks      bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant, minute)
);

-- The same, all time: what the summary and latency views read.
CREATE TABLE analytics_variant_totals (
    experiment_id    text             NOT NULL,
    variant          text             NOT NULL,
    serves           bigint           NOT NULL DEFAULT 0,
    errors           bigint           NOT NULL DEFAULT 0,
    within_sla       bigint           NOT NULL DEFAULT 0,
    latency_sum_ms   double precision NOT NULL DEFAULT 0,
    latency_buckets  bigint[]         NOT NULL DEFAULT '{}',
    outcomes         bigint           NOT NULL DEFAULT 0,
    rewards          double precision NOT NULL DEFAULT 0,
    late_clicks      bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant)
);

-- Per experiment, variant, item and hour of serve time.
CREATE TABLE analytics_item_hours (
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    item_id        bigint           NOT NULL,
    hour           timestamptz      NOT NULL,
    serves         bigint           NOT NULL DEFAULT 0,
    outcomes       bigint           NOT NULL DEFAULT 0,
    rewards        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant, item_id, hour)
);

-- The same, all time: what the arms view ranks.
CREATE TABLE analytics_item_totals (
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    item_id        bigint           NOT NULL,
    serves         bigint           NOT NULL DEFAULT 0,
    outcomes       bigint           NOT NULL DEFAULT 0,
    rewards        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant, item_id)
);

-- Per experiment, variant and cohort attribute value (all time).
CREATE TABLE analytics_cohorts (
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    attribute      text             NOT NULL,
    value          text             NOT NULL,
    serves         bigint           NOT NULL DEFAULT 0,
    outcomes       bigint           NOT NULL DEFAULT 0,
    rewards        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant, attribute, value)
);

-- Users seen per experiment: the variant they were served and when.
CREATE TABLE analytics_users (
    experiment_id  text        NOT NULL,
    user_id        text        NOT NULL,
    variant        text        NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    serves         bigint      NOT NULL,
    PRIMARY KEY (experiment_id, user_id)
);
CREATE INDEX analytics_users_by_last_seen ON analytics_users (experiment_id, last_seen);

-- The learner's latest counts per arm, from state-updates.
CREATE TABLE analytics_arm_posteriors (
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    item_id        bigint           NOT NULL,
    pulls          double precision NOT NULL,
    successes      double precision NOT NULL,
    version        bigint           NOT NULL,
    PRIMARY KEY (experiment_id, variant, item_id)
);
