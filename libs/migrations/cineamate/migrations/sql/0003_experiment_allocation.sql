-- Assignment: which bucket ranges belong to which variant (kept so a weight change
-- moves as few users as possible), the hash salt, and when the experiment ran.
ALTER TABLE experiments
    ADD COLUMN allocation jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN salt       text  NOT NULL DEFAULT '',
    ADD COLUMN started_at timestamptz,
    ADD COLUMN stopped_at timestamptz;
