-- The declarations the lake holds (employer identity of each decl_id).
CREATE OR REPLACE VIEW declarations AS
SELECT * FROM read_parquet(${declarations}, hive_partitioning = false);
