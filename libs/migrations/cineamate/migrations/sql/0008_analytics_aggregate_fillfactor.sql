-- The ingest adds to most rows of the aggregate tables in every batch (about
-- 15,000 item-hour rows per experiment and hour). With free room on each page,
-- PostgreSQL writes the new version of a row beside the old one without
-- touching the indexes (a HOT update), which halved the cost of these upserts
-- in the ingest benchmark. New pages keep half their room free; the tables
-- are small next to the raw events.
ALTER TABLE analytics_item_hours SET (fillfactor = 50);
ALTER TABLE analytics_item_totals SET (fillfactor = 50);
ALTER TABLE analytics_variant_minutes SET (fillfactor = 50);
ALTER TABLE analytics_variant_hours SET (fillfactor = 50);
ALTER TABLE analytics_variant_totals SET (fillfactor = 50);
ALTER TABLE analytics_cohorts SET (fillfactor = 50);
ALTER TABLE analytics_users SET (fillfactor = 50);
ALTER TABLE analytics_arm_posteriors SET (fillfactor = 50);
