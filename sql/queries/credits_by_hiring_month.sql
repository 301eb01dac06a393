-- Credits of people hired during the year, by month of hiring (first contract start in the
-- year, any employer).
WITH hires AS (
    SELECT nir, year, min(first_contract_start) AS hired_on
    FROM employments
    GROUP BY nir, year
)
SELECT a.year, strftime(h.hired_on, '%Y-%m') AS hiring_month, count(*) AS people,
       sum(a.credit_cents) AS credit_cents, avg(a.worked_ratio) AS avg_ratio
FROM annual_credits a JOIN hires h USING (nir, year)
WHERE year(h.hired_on) = a.year
GROUP BY a.year, hiring_month
ORDER BY a.year, hiring_month;
