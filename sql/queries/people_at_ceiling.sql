-- People whose earned balance reached the ceiling after the year's credit (credit capped).
SELECT year, nir, category, balance_before_cents, annual_amount_cents, credit_cents,
       balance_after_cents, ceiling_cents
FROM annual_credits
WHERE balance_after_cents >= ceiling_cents
ORDER BY year, nir;
