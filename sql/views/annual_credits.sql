-- One row per person examined for a year (credited, or credited 0), latest published run of
-- each year. Contract columns first; the engine's explanation columns follow.
CREATE OR REPLACE VIEW annual_credits AS
SELECT * FROM read_parquet(${annual_credits}, union_by_name = true, hive_partitioning = false);
