-- Year-over-year comparison per category: people and credits, with the change (null for the
-- first year the catalog holds: there is nothing to compare it with).
WITH t AS (
    SELECT year, category, count(*) AS people, sum(credit_cents) AS credit_cents
    FROM annual_credits GROUP BY year, category
)
SELECT cur.year, cur.category, cur.people, cur.credit_cents,
       prev.people AS people_previous_year, prev.credit_cents AS credit_cents_previous_year,
       CASE WHEN cur.year > (SELECT min(year) FROM t)
            THEN cur.credit_cents - coalesce(prev.credit_cents, 0) END AS credit_cents_change
FROM t cur LEFT JOIN t prev ON prev.year = cur.year - 1 AND prev.category = cur.category
ORDER BY cur.year, cur.category;
