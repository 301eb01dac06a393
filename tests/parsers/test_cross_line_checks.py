"""Checks that compare lines of one declaration: NIR year vs birth date, NIR départements
20/96 vs birth year (CCH-11), one NIR per declaration (CCH-14), one contract number per
individual (40.009 CCH-12)."""

from __future__ import annotations

import polars as pl

from parsers.flat import parse_flat_file

def contract_block(dsn, number: str) -> str:
    """The fixture employee's contract block (S21.G00.40) under another contract number."""
    lines = [x for x in dsn.EMPLOYEE.splitlines() if x.startswith("S21.G00.40.")]
    return "\n".join(lines).replace("S21.G00.40.009,'C0001'", f"S21.G00.40.009,'{number}'")


def parse(tmp_path, dsn, body):
    text = dsn.envoi(dsn.declaration(body))
    p = parse_flat_file(dsn.write(tmp_path, "f.dsn", text))
    assert p.lines_read == p.lines_parsed + p.lines_quarantined == text.count("\n")
    return p


def causes(p):
    return p["quarantine"].filter(pl.col("is_cause"))


def test_birth_year_mismatch_quarantines_the_birth_date_only(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("S21.G00.30.006,'15071985'", "S21.G00.30.006,'15071986'")
    p = parse(tmp_path, dsn, body)
    c = causes(p).row(0, named=True)
    assert (c["reason"], c["scope"], c["rubrique"]) == ("nir_birth_year_mismatch", "line",
                                                        "S21.G00.30.006")
    assert p.lines_quarantined == 1 and not p["declarations"]["rejected"][0]
    person = p["individuals"].row(0, named=True)
    assert person["birth_date"] is None and person["nir"] == "1850775123456"


def test_department_96_accepted_before_1968(tmp_path, dsn):
    body = (dsn.EMPLOYEE.replace("'1850775123456'", "'1650796123456'")
            .replace("S21.G00.30.006,'15071985'", "S21.G00.30.006,'15071965'"))
    p = parse(tmp_path, dsn, body)
    assert p.lines_quarantined == 0 and p["individuals"]["nir"].to_list() == ["1650796123456"]


def test_same_nir_twice_rejects_the_declaration(tmp_path, dsn):
    second = dsn.EMPLOYEE.replace("'DUPONT'", "'DURAND'")
    p = parse(tmp_path, dsn, dsn.EMPLOYEE + second)
    c = causes(p)
    assert c["reason"].to_list() == ["duplicate_nir"] and c["scope"].to_list() == ["declaration"]
    assert c["value_masked"].to_list() == ["185*"]  # NIR masked
    first_nir_line = 11 + 9 + 4 + 1  # S10 header, S20 block, employer, then the first NIR
    assert c["line_no"][0] > first_nir_line  # the second occurrence is the cause
    decl = p["declarations"].row(0, named=True)
    assert decl["rejected"] and decl["reject_reason"] == "duplicate_nir"
    assert p["individuals"].height == 0 and p["pay"].height == 0


def test_same_contract_number_twice_for_one_individual(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("S21.G00.50.001", contract_block(dsn, " c0001")
                                + "\nS21.G00.50.001", 1)
    p = parse(tmp_path, dsn, body)
    c = causes(p)
    assert c["reason"].to_list() == ["duplicate_contract_number"]
    assert c["scope"].to_list() == ["declaration"] and c["rubrique"][0] == "S21.G00.40.009"
    assert p["declarations"]["rejected"][0] and p["contracts"].height == 0


def test_same_contract_number_for_two_individuals_is_fine(tmp_path, dsn):
    second = dsn.EMPLOYEE.replace("'1850775123456'", "'2900675123456'").replace(
        "S21.G00.30.006,'15071985'", "S21.G00.30.006,'15061990'")
    p = parse(tmp_path, dsn, dsn.EMPLOYEE + second)
    assert p.lines_quarantined == 0 and p["contracts"].height == 2


def test_duplicates_in_a_signalement_are_warnings(tmp_path, dsn):
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE + dsn.EMPLOYEE, nature="04"))
    p = parse_flat_file(dsn.write(tmp_path, "s.dsn", text))
    q = p["quarantine"]
    assert p.lines_quarantined == 0
    assert q.filter(pl.col("reason") == "duplicate_nir")["scope"].to_list() == ["warning"]


def test_contract_number_characters_are_a_warning(tmp_path, dsn):
    """CT2025 §4.4.11 (CSL-11): '*' is outside the list, 'é' inside; the contract and its pay
    blocks are still read and linked."""
    body = (dsn.EMPLOYEE.replace("S21.G00.40.009,'C0001'", "S21.G00.40.009,'C*001'")
            .replace("S21.G00.51.010,'C0001'", "S21.G00.51.010,'C*001'"))
    p = parse(tmp_path, dsn, body)
    w = p["quarantine"].filter(pl.col("reason") == "contract_number_characters")
    assert sorted(w["rubrique"].unique().to_list()) == ["S21.G00.40.009", "S21.G00.51.010"]
    assert set(w["scope"].to_list()) == {"warning"}
    assert w["detail"][0].startswith("character(s) '*' outside the norm's list")
    assert p.lines_quarantined == 0 and not p["declarations"]["rejected"][0]
    assert p["contracts"]["contract_no"].to_list() == ["C*001"]
    assert p["pay"].height == body.count("S21.G00.51.010")

    fine = (dsn.EMPLOYEE.replace("S21.G00.40.009,'C0001'", "S21.G00.40.009,'Cé-01/a b'")
            .replace("S21.G00.51.010,'C0001'", "S21.G00.51.010,'Cé-01/a b'"))
    assert parse(tmp_path, dsn, fine)["quarantine"].filter(
        pl.col("reason") == "contract_number_characters").height == 0
