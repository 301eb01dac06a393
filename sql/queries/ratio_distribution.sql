-- Distribution of worked-time ratios, by tenths (1.0 and above in the last bucket).
SELECT year, least(floor(worked_ratio * 10), 10) / 10 AS ratio_from, count(*) AS people,
       sum(credit_cents) AS credit_cents
FROM annual_credits
GROUP BY year, ratio_from
ORDER BY year, ratio_from;
