-- How much was credited to low-qualified workers for activity year 2024.
SELECT count(*) AS people, coalesce(sum(credit_cents), 0) AS credit_cents,
       coalesce(sum(credit_cents), 0) / 100.0 AS credit_eur
FROM annual_credits
WHERE year = 2024 AND category = 'low_qualified';
