-- Credits per employer (SIREN): a person employed by several employers counts for each.
SELECT a.year, e.siren, count(DISTINCT a.nir) AS people, sum(a.credit_cents) AS credit_cents
FROM annual_credits a
JOIN (SELECT DISTINCT nir, year, siren FROM employments) e USING (nir, year)
GROUP BY a.year, e.siren
ORDER BY a.year, credit_cents DESC, e.siren;
