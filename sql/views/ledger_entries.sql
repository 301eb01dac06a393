-- The append-only journal: entries of every published run (CURRENT), never updated.
CREATE OR REPLACE VIEW ledger_entries AS
SELECT * FROM read_parquet(${ledger_entries}, union_by_name = true, hive_partitioning = false);
