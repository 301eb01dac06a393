"""S21.G00.31 / S21.G00.41 change blocks -> lake tables ``individual_changes`` and
``contract_changes`` (dsn_format.md §1.5): typed values, current identity, lineage."""

from __future__ import annotations

from datetime import date

import polars as pl

from generator.builder import (Contract, ContractChange, Declaration, IndividualChange, Person,
                               envoi_lines, monthly_pay, payment_for, write_envoi)
from parsers.ingest import ingest_paths
from parsers.lake import scan
from parsers.lake_schema import TABLES, person_bucket

NIR = "1850175123457"  # bucket 1 of 16
OLD_NIR = "1850199456783"  # an NIA (born abroad), bucket 15 of 16
SIRET = "12345678200017"


def _declaration() -> Declaration:
    month = date(2025, 7, 1)
    con = Contract(number="CTR07", start=date(2020, 1, 1),
                   changes=[ContractChange(date(2025, 7, 1), old_siret="12345678200025",
                                           old_number="ctr01", old_start=date(2019, 12, 1),
                                           old_quota="75.83")])
    person = Person(nir=NIR, last_name="DUPONT", first_names="MARIE", birth_date="01011985",
                    changes=[IndividualChange(date(2025, 7, 1), old_nir=OLD_NIR,
                                              old_last_name="DUPOND")],
                    contracts=[con])
    person.payments.append(payment_for(month, monthly_pay(con, month, 2000, "151.67"), 2000))
    return Declaration(siren=SIRET[:9], nic=SIRET[9:], month=month, people=[person])


def _first_line(d: Declaration, rubrique: str) -> int:
    return next(i for i, (r, _) in enumerate(envoi_lines(d), start=1) if r == rubrique)


def test_change_blocks_become_typed_rows_with_lineage(tmp_path):
    d = _declaration()
    path = tmp_path / "jul.dsn"
    write_envoi(d, path)
    report = ingest_paths([path], tmp_path / "DIR", n_buckets=16)
    assert report.lines_quarantined == 0
    root = tmp_path / "DIR"
    decl = scan(root, "declarations").collect().row(0, named=True)

    ind = scan(root, "individual_changes").collect()
    assert ind.schema == pl.Schema(TABLES["individual_changes"])
    assert ind.height == 1
    r = ind.row(0, named=True)
    assert (r["nir"], r["old_nir"], r["change_date"], r["old_last_name"]) == \
        (NIR, OLD_NIR, date(2025, 7, 1), "DUPOND")
    assert r["decl_id"] == decl["decl_id"] and r["decl_month"] == date(2025, 7, 1)
    assert r["line_no"] == _first_line(d, "S21.G00.31.001") and r["siret"] == SIRET
    buckets = pl.DataFrame({"nir": [NIR, OLD_NIR]}).select(person_bucket(16))["bucket"].to_list()
    assert r["bucket"] == buckets[0] != buckets[1]  # bucket of the CURRENT NIR

    con = scan(root, "contract_changes").collect()
    assert con.schema == pl.Schema(TABLES["contract_changes"])
    assert con.height == 1
    c = con.row(0, named=True)
    assert (c["nir"], c["siret"], c["contract_no"], c["contract_start"]) == \
        (NIR, SIRET, "CTR07", date(2020, 1, 1))
    assert (c["old_siret"], c["old_contract_no"], c["old_contract_start"], c["change_date"]) == \
        ("12345678200025", "CTR01", date(2019, 12, 1), date(2025, 7, 1))
    assert c["old_quota_h"] == 7583 and c["old_ref_quota_h"] is None
    assert c["line_no"] == _first_line(d, "S21.G00.41.001") and c["decl_id"] == decl["decl_id"]
    assert c["contract_occ"] == _first_line(d, "S21.G00.40.001")


def test_change_tables_are_month_partitioned_and_empty_when_absent(tmp_path):
    d = _declaration()
    write_envoi(d, tmp_path / "jul.dsn")
    root = tmp_path / "DIR"
    ingest_paths([tmp_path / "jul.dsn"], root, n_buckets=16)
    parts = list((root / "lake" / "individual_changes").rglob("*.parquet"))
    assert parts and all(p.parent.name == "month=2025-07" for p in parts)
    d.people[0].changes.clear()
    d.people[0].contracts[0].changes.clear()
    d.order_no = "2"  # another file (the lake deduplicates identical bytes)
    write_envoi(d, tmp_path / "plain.dsn")
    other = tmp_path / "OTHER"
    ingest_paths([tmp_path / "plain.dsn"], other, n_buckets=16)
    assert scan(other, "individual_changes").collect().height == 0
    assert scan(other, "contract_changes").collect().height == 0
