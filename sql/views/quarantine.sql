-- Every input line, declaration or file that was not used, and why (lake quarantine as of the
-- current run).
CREATE OR REPLACE VIEW quarantine AS
SELECT * FROM read_parquet(${quarantine}, hive_partitioning = false);
