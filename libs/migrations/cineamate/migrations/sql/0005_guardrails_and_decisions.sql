-- Guardrails: the latest status per experiment, variant and guardrail, and every
-- rollback (undone ones keep their row, with when they were undone).
CREATE TABLE guardrail_status (
    experiment_id   text             NOT NULL,
    variant         text             NOT NULL,
    guardrail       text             NOT NULL,
    status          text             NOT NULL,  -- ok, warning (one breach), breach, no_data
    observed        double precision,
    threshold       double precision NOT NULL,
    sample          bigint           NOT NULL,
    detail          text,
    evaluated_at    timestamptz      NOT NULL,
    PRIMARY KEY (experiment_id, variant, guardrail)
);

CREATE TABLE guardrail_rollbacks (
    id              bigserial        PRIMARY KEY,
    experiment_id   text             NOT NULL,
    variant         text,            -- NULL: the whole experiment was paused
    guardrail       text             NOT NULL,
    observed        double precision NOT NULL,
    threshold       double precision NOT NULL,
    window_seconds  double precision NOT NULL,
    action          text             NOT NULL,  -- rollback or pause
    rolled_back_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX guardrail_rollbacks_by_experiment ON guardrail_rollbacks (experiment_id, rolled_back_at);

-- Decisions: each periodic evaluation, with its reasons.
CREATE TABLE decisions (
    experiment_id   text        NOT NULL,
    evaluated_at    timestamptz NOT NULL DEFAULT now(),
    decision        text        NOT NULL,
    best_variant    text,
    details         jsonb       NOT NULL,
    PRIMARY KEY (experiment_id, evaluated_at)
);
