-- Credits by category and year.
SELECT year, category, count(*) AS people,
       sum(credit_cents) AS credit_cents, sum(annual_amount_cents) AS annual_amount_cents
FROM annual_credits
GROUP BY year, category
ORDER BY year, category;
