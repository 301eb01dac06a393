-- People whose credit the ceiling cut: credited less than the year's amount because their
-- earned balance had no more room (a person credited in full who lands exactly on the
-- ceiling is not one).
SELECT year, nir, category, balance_before_cents, annual_amount_cents, credit_cents,
       balance_after_cents, ceiling_cents
FROM annual_credits
WHERE credit_cents < annual_amount_cents
ORDER BY year, nir;
