-- Months in which people were under contract at an establishment but no current DSN declares
-- them (employments.undeclared_months), by establishment and month: how many people, and
-- whether the establishment filed a usable DSN mensuelle (nature 01, not rejected, not a test)
-- for that month (true: its DSN omits those contracts; false: the month's DSN is missing; a
-- signalement alone does not count). dsn_rejected: a DSN mensuelle of that month was received
-- and rejected (the quarantine view says why): send it back to the employer.
-- fractions_missing: a month declared in fractions (S20.G00.05.003 = nd, the n-th of d) of
-- which some have not arrived or were rejected (e.g. '2/2'): the people may be in those, so
-- see to that fraction before asking the employer why its DSN omits them (dsn_format.md
-- §3.3: the month is complete only when all d are received).
-- Their time counts nothing until the DSN arrive; a rerun then credits the difference.
WITH months AS (
    SELECT year, siren, siret, nir, unnest(string_split(undeclared_months, ' ')) AS month
    FROM employments
    WHERE months_undeclared > 0
),
rejected AS (
    SELECT DISTINCT siret, strftime(decl_month, '%Y-%m') AS month
    FROM declarations
    WHERE nature = '01' AND coalesce(rejected, false) AND NOT coalesce(envoi_is_test, false)
),
filed AS (
    SELECT siret, strftime(decl_month, '%Y-%m') AS month,
           max(TRY_CAST(substr(coalesce(fraction, '11'), 2, 1) AS INTEGER)) AS parts,
           list(DISTINCT TRY_CAST(substr(coalesce(fraction, '11'), 1, 1) AS INTEGER)) AS got
    FROM declarations
    WHERE nature = '01' AND NOT coalesce(rejected, false) AND NOT coalesce(envoi_is_test, false)
    GROUP BY ALL
)
SELECT m.year, m.siren, m.siret, m.month, count(DISTINCT m.nir) AS people,
       f.siret IS NOT NULL AS dsn_filed,
       r.siret IS NOT NULL AS dsn_rejected,
       array_to_string(list_transform(
           list_filter(range(1, coalesce(f.parts, 1) + 1), lambda x: NOT list_contains(f.got, x)),
           lambda x: x || '/' || f.parts), ' ') AS fractions_missing
FROM months m
LEFT JOIN filed f ON f.siret = m.siret AND f.month = m.month
LEFT JOIN rejected r ON r.siret = m.siret AND r.month = m.month
GROUP BY ALL
ORDER BY m.year, m.siret, m.month;
