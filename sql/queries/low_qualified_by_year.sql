-- How much was credited to low-qualified workers (holder's declaration, R6323-3-1), per
-- activity year, whatever category label their row carries: a low-qualified worker who is
-- also BOETH gets the same 800 € (not stacked) under the label chosen for the row.
SELECT year, count(*) AS people, coalesce(sum(credit_cents), 0) AS credit_cents,
       coalesce(sum(credit_cents), 0) / 100.0 AS credit_eur
FROM annual_credits
WHERE category = 'low_qualified' OR coalesce(low_qualified, false)
GROUP BY year
ORDER BY year;
