-- Credits per employer (SIREN): a person employed by several employers counts for each.
-- Only employers whose current DSN declare the person in the year (months_declared > 0): a
-- contract under way whose employer declares no month of it (an end of contract never
-- declared, a renumbered contract) is in employments as undeclared months, not as employment.
SELECT a.year, e.siren, count(DISTINCT a.nir) AS people, sum(a.credit_cents) AS credit_cents
FROM annual_credits a
JOIN (SELECT DISTINCT nir, year, siren FROM employments WHERE months_declared > 0) e
    USING (nir, year)
GROUP BY a.year, e.siren
ORDER BY a.year, credit_cents DESC, e.siren;
