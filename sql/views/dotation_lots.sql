-- Dotation lots (décret 2025-341): funder, amount, conditions.
CREATE OR REPLACE VIEW dotation_lots AS
SELECT * FROM read_parquet(${dotation_lots}, hive_partitioning = false);
