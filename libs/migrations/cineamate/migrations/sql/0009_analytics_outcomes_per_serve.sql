-- The outcomes of a serve in one row, its arrays in the order they arrived,
-- instead of one row per served item. Writing ten rows of thirteen columns per
-- serve, each through two indexes, was most of PostgreSQL's work in the
-- ingest; a serve's outcomes come in one to three messages, so this row is
-- inserted once and at most updated a few times, in place.
--
-- ``analytics_rewards`` stays as a view with the columns it had as a table:
-- one row per outcome, its id ``serve_id:item_id``.
CREATE TABLE analytics_outcomes (
    serve_id       text               NOT NULL,
    experiment_id  text               NOT NULL,
    variant        text               NOT NULL,
    policy_type    text               NOT NULL,
    user_id        text,
    cohort         jsonb              NOT NULL,
    served_at      timestamptz        NOT NULL,
    item_ids       bigint[]           NOT NULL,
    positions      integer[]          NOT NULL,
    propensities   double precision[] NOT NULL,
    rewards        double precision[] NOT NULL,
    rewarded_ats   timestamptz[]      NOT NULL,
    PRIMARY KEY (serve_id, served_at)
) PARTITION BY RANGE (served_at);
CREATE INDEX analytics_outcomes_by_experiment
    ON analytics_outcomes (experiment_id, served_at, serve_id);

-- The same day partitions as the old table, and its rows, grouped per serve.
DO $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT child.relname AS name, pg_get_expr(child.relpartbound, child.oid) AS bound
        FROM pg_inherits
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname = 'analytics_rewards'
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF analytics_outcomes %s',
            replace(part.name, 'analytics_rewards_', 'analytics_outcomes_'),
            part.bound
        );
    END LOOP;
END $$;

INSERT INTO analytics_outcomes
SELECT serve_id, min(experiment_id), min(variant), min(policy_type), min(user_id),
    (array_agg(cohort))[1], served_at,
    array_agg(item_id ORDER BY rewarded_at, position),
    array_agg(position ORDER BY rewarded_at, position),
    array_agg(propensity ORDER BY rewarded_at, position),
    array_agg(reward ORDER BY rewarded_at, position),
    array_agg(rewarded_at ORDER BY rewarded_at, position)
FROM analytics_rewards
GROUP BY serve_id, served_at;

DROP TABLE analytics_rewards;

CREATE VIEW analytics_rewards AS
SELECT o.serve_id || ':' || u.item_id AS reward_id, o.serve_id, o.experiment_id, o.variant,
    o.policy_type, u.item_id, u.position, u.propensity, u.reward, o.user_id, o.cohort,
    o.served_at, u.rewarded_at
FROM analytics_outcomes o
CROSS JOIN LATERAL unnest(o.item_ids, o.positions, o.propensities, o.rewards, o.rewarded_ats)
    AS u(item_id, position, propensity, reward, rewarded_at);
