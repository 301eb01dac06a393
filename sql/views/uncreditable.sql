-- People examined but not creditable (no NIR, out of scope…), latest run of each year.
CREATE OR REPLACE VIEW uncreditable AS
SELECT * FROM read_parquet(${uncreditable}, union_by_name = true, hive_partitioning = false);
