-- Every input line, declaration or file that was not used, and why: the lake's quarantine as
-- of the current run (written by ingestion), plus the declaration versions a later version
-- supersedes (scope 'version', decided for the whole lake at publication: an annule-et-remplace
-- may arrive before or after the declaration it replaces). Their lines stay in the lake and
-- count as parsed; `detail` names the version used instead.
CREATE OR REPLACE VIEW quarantine AS
SELECT * FROM read_parquet(${quarantine}, hive_partitioning = false)
UNION ALL BY NAME
SELECT d.source_file, d.line_no, 'S20.G00.05.001' AS rubrique, d.superseded_reason AS reason,
       d.file_sha256, CAST(NULL AS VARCHAR) AS value_masked,
       'not used: superseded by ' || coalesce(s.source_file || ' line ' || s.line_no
                                              || ' (' || s.decl_id || ')', 'no version')
           AS detail,
       'version' AS scope, d.decl_id, d.decl_month, TRUE AS is_cause
FROM read_parquet(${declarations}, hive_partitioning = false) AS d
LEFT JOIN read_parquet(${declarations}, hive_partitioning = false) AS s
       ON s.decl_id = d.superseded_by
WHERE d.superseded_reason IS NOT NULL;
