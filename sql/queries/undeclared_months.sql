-- Months in which people were under contract at an establishment but no current DSN declares
-- them (employments.undeclared_months), by establishment and month: how many people, and
-- whether the establishment filed a usable DSN mensuelle (nature 01, not rejected, not a test)
-- for that month (true: its DSN omits those contracts; false: the month's DSN is missing; a
-- signalement alone does not count). Their time counts nothing until the DSN arrive; a rerun
-- then credits the difference.
WITH months AS (
    SELECT year, siren, siret, nir, unnest(string_split(undeclared_months, ' ')) AS month
    FROM employments
    WHERE months_undeclared > 0
),
filed AS (
    SELECT DISTINCT siret, strftime(decl_month, '%Y-%m') AS month
    FROM declarations
    WHERE nature = '01' AND NOT coalesce(rejected, false) AND NOT coalesce(envoi_is_test, false)
)
SELECT m.year, m.siren, m.siret, m.month, count(DISTINCT m.nir) AS people,
       f.siret IS NOT NULL AS dsn_filed
FROM months m
LEFT JOIN filed f ON f.siret = m.siret AND f.month = m.month
GROUP BY ALL
ORDER BY m.year, m.siret, m.month;
