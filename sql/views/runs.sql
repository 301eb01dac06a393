-- The published runs, in order (with the sha256 of each run's entries file).
CREATE OR REPLACE VIEW runs AS
SELECT * FROM read_parquet(${runs}, hive_partitioning = false);
