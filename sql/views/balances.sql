-- Current balance per account after the current run (earned = ceiling-relevant sub-ledger;
-- earned_hours = hour-era balance not yet converted to euros, 0 once converted).
CREATE OR REPLACE VIEW balances AS
SELECT * FROM read_parquet(${balances}, union_by_name = true, hive_partitioning = false);
