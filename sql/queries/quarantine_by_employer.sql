-- Quarantined lines and declarations by employer (SIREN) and reason.
SELECT coalesce(d.siren, '(unknown)') AS siren, q.reason, count(*) AS lines
FROM quarantine q LEFT JOIN declarations d USING (decl_id)
GROUP BY ALL
ORDER BY lines DESC, siren, q.reason;
