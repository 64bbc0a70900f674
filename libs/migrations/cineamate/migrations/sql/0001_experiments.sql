-- Experiments and their audit trail: every service reads the configuration,
-- the assignment service owns the writes.
CREATE TABLE experiments (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'running', 'paused', 'stopped')),
    config      jsonb NOT NULL,
    revision    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX experiments_status_idx ON experiments (status);

CREATE TABLE experiment_audit (
    id             bigserial PRIMARY KEY,
    experiment_id  text NOT NULL REFERENCES experiments (id),
    actor          text NOT NULL,
    action         text NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    before         jsonb,
    after          jsonb
);

CREATE INDEX experiment_audit_experiment_idx ON experiment_audit (experiment_id, changed_at);
