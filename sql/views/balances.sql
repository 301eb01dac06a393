-- Current balance per account after the current run (earned = ceiling-relevant sub-ledger).
CREATE OR REPLACE VIEW balances AS
SELECT * FROM read_parquet(${balances}, hive_partitioning = false);
