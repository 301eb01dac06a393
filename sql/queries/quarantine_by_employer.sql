-- Quarantined lines and declarations by employer (SIREN) and reason. A row outside any
-- declaration (an envoi-level or file-level row, e.g. a test envoi's S10 line) is attributed
-- to its file's employer when the file declares exactly one SIREN.
WITH file_employer AS (
    SELECT file_sha256,
           CASE WHEN count(DISTINCT siren) = 1 THEN min(siren) END AS siren
    FROM declarations
    GROUP BY file_sha256
)
SELECT coalesce(d.siren, f.siren, '(unknown)') AS siren, q.reason, count(*) AS lines
FROM quarantine q
LEFT JOIN declarations d USING (decl_id)
LEFT JOIN file_employer f ON f.file_sha256 = q.file_sha256
GROUP BY ALL
ORDER BY lines DESC, siren, q.reason;
