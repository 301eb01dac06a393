"""Block occurrences -> table rows (``tables._blocks``): which value fills a field, which
parent a row is attached to, and which occurrences are left out."""

from __future__ import annotations

import polars as pl

from parsers.flat import parse_flat_file
from parsers.structure import build_catalog

SECOND = (
    "S21.G00.30.001,'2900175123458'\nS21.G00.30.002,'MARTIN'\nS21.G00.30.004,'ANNE'\n"
    "S21.G00.30.006,'01011990'\nS21.G00.40.001,'01062021'\nS21.G00.40.002,'04'\n"
    "S21.G00.40.007,'01'\nS21.G00.40.008,'99'\nS21.G00.40.009,'C0002'\n"
    "S21.G00.40.011,'10'\nS21.G00.40.012,'151.67'\nS21.G00.40.013,'75.83'\n"
    "S21.G00.40.014,'20'\nS21.G00.40.017,'1486'\nS21.G00.40.026,'99'\n"
)


def test_quarantined_line_leaves_its_field_null(tmp_path, dsn):
    """A line quarantined for its own (non-key) anomaly does not fill its field; the
    occurrence still gives its row, with its other fields."""
    body = dsn.EMPLOYEE.replace("S21.G00.40.002,'04'", "S21.G00.40.002,'XX'")
    p = parse_flat_file(dsn.write(tmp_path, "f.dsn", dsn.envoi(dsn.declaration(body))))
    assert p["quarantine"].filter(pl.col("scope") == "line")["rubrique"].to_list() == [
        "S21.G00.40.002"]
    con = p["contracts"].row(0, named=True)
    assert con["status_conv"] is None and con["contract_no"] == "C0001"


def test_rows_attach_to_their_own_parents(tmp_path, dsn):
    """Two individuals: each contract carries its own individual's NIR, each activity the
    period and contract of its own pay block; rows come in line order."""
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE + SECOND))
    p = parse_flat_file(dsn.write(tmp_path, "two.dsn", text))
    assert p.lines_quarantined == 0, p["quarantine"]
    ind = p["individuals"]
    assert ind["nir"].to_list() == ["1850775123456", "2900175123458"]
    con = p["contracts"]
    assert con["nir"].to_list() == ind["nir"].to_list()
    assert con["person_occ"].to_list() == ind["person_occ"].to_list()
    assert con["contract_no"].to_list() == ["C0001", "C0002"]
    assert con["quota_h"].to_list() == [15167, 7583]
    assert con["line_no"].is_sorted(), "rows in line order"
    act = p["activities"].row(0, named=True)
    pay = p["pay"].filter(pl.col("pay_type") == "002").row(0, named=True)
    assert (act["pay_occ"], act["contract_no"], act["pay_type"]) == (pay["pay_occ"], "C0001", "002")


def test_set_aside_pay_block_has_no_rows(tmp_path, dsn):
    """A pay block whose contract number matches no contract is set aside with its
    activities: neither becomes a row, the rest of the declaration does."""
    body = dsn.EMPLOYEE.replace("S21.G00.51.010,'C0001'\nS21.G00.51.011,'002'",
                                "S21.G00.51.010,'C0009'\nS21.G00.51.011,'002'")
    p = parse_flat_file(dsn.write(tmp_path, "aside.dsn", dsn.envoi(dsn.declaration(body))))
    assert p["pay"]["pay_type"].to_list() == ["001"]
    assert p["activities"].height == 0
    assert p["contracts"].height == 1 and p["individuals"].height == 1


def test_catalog_is_built_once_per_set_of_ids():
    """Batches with the same rubrique ids share one catalogue (its derived lookup arrays are
    cached per catalogue); an id outside the norm gives another one."""
    norm = pl.Series(["S21.G00.30.001", "S10.G00.00.001"])
    a, _ = build_catalog(norm)
    b, _ = build_catalog(norm.reverse())
    c, codes_ = build_catalog(pl.Series(["S21.G00.30.001", "S21.G00.99.999"]))
    assert a is b and c is not a
    assert codes_.to_list()[1] == c.rcode("S21.G00.99.999") >= a.rubriques.height
