-- Year-over-year comparison per category: people and credits, with the change (null for the
-- first year the catalog holds: there is nothing to compare it with; and null beside an
-- hour-era year, 2015-2018, whose credits are hours, in annual_credits.credit_hours: its
-- credit_cents is empty, and the first euro year is not a growth from 0).
WITH t AS (
    SELECT year, category, count(*) AS people, sum(credit_cents) AS credit_cents
    FROM annual_credits GROUP BY year, category
), y AS (
    SELECT year, count(credit_cents) = 0 AS hour_era FROM annual_credits GROUP BY year
)
SELECT cur.year, cur.category, cur.people, cur.credit_cents,
       prev.people AS people_previous_year, prev.credit_cents AS credit_cents_previous_year,
       CASE WHEN cur.year > (SELECT min(year) FROM t) AND NOT cy.hour_era
                 AND NOT coalesce(py.hour_era, false)
            THEN cur.credit_cents - coalesce(prev.credit_cents, 0) END AS credit_cents_change
FROM t cur
JOIN y cy ON cy.year = cur.year
LEFT JOIN y py ON py.year = cur.year - 1
LEFT JOIN t prev ON prev.year = cur.year - 1 AND prev.category = cur.category
ORDER BY cur.year, cur.category;
