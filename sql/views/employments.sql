-- Who employed whom during each year (person x SIRET), latest run of each year: the contracts
-- of the current declaration versions the run credited from (identity changes applied).
CREATE OR REPLACE VIEW employments AS
SELECT * FROM read_parquet(${employments}, union_by_name = true, hive_partitioning = false);
