-- Named catalogues (the arm sets experiments refer to by name), and the
-- learner's periodic posterior snapshots with the Kafka offsets they cover.
CREATE TABLE catalogue_items (
    catalogue  text   NOT NULL,
    item_id    bigint NOT NULL,
    title      text,
    PRIMARY KEY (catalogue, item_id)
);

CREATE TABLE posterior_snapshots (
    experiment_id  text        NOT NULL,
    variant        text        NOT NULL,
    version        bigint      NOT NULL,
    -- partition -> last reward offset the counts include
    offsets        jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, variant, version)
);

CREATE TABLE posterior_snapshot_arms (
    experiment_id  text             NOT NULL,
    variant        text             NOT NULL,
    version        bigint           NOT NULL,
    arm_id         bigint           NOT NULL,
    pulls          double precision NOT NULL,
    successes      double precision NOT NULL,
    PRIMARY KEY (experiment_id, variant, version, arm_id),
    FOREIGN KEY (experiment_id, variant, version)
        REFERENCES posterior_snapshots (experiment_id, variant, version) ON DELETE CASCADE
);
