-- The append-only journal: entries of every published run (CURRENT), never updated.
-- kind: annual_credit | adjustment_credit | reversal | opening_balance_import |
--       hour_to_euro_conversion | dotation | dotation_expiry | dotation_refund;
-- sub_ledger: earned (cents) | earned_hours (hour era 2015-2018, amount_hours) | dotation.
CREATE OR REPLACE VIEW ledger_entries AS
SELECT * FROM read_parquet(${ledger_entries}, union_by_name = true, hive_partitioning = false);
