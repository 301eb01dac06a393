"""Dotations (décret 2025-341): lots outside the ceiling, expiry/refund as of the run date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from flows import steps
from pipeline import publish as pub
from pipeline.dotations import plan_dotations, read_dotations
from pipeline.ledger import RunMeta, empty_entries

from .conftest import BASE, FakeEngine, amounts_frame, nir

CSV = (
    "funder_id,nir,amount_cents,received_date,certification_codes,deadline,refund\n"
    f"OPCO1,{nir(0)},100000,2025-04-20,RNCP123;RS456,2025-06-30,true\n"
    f"REGION,{nir(1)},50000,2025-04-20,,2025-05-31,false\n"
    f"EMP1,{nir(2)},30000,2025-04-20,,,\n"
    f"EMP1,{nir(2)},30000,2025-04-20,,,\n"
    f"EMP2,{nir(3)},20000,2025-09-01,,,false\n"
)


def test_read_dotations_reports_bad_lines(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(CSV + f"X,{nir(4)},abc,2025-01-01,,,\nY,123,100,2025-13-01,,,maybe\n"
                 "Z,ABCDEFGHIJKLM,100,2025-01-01,,,\nZ,1 00469123011,100,2025-01-01,,,\n")
    lots, errors = read_dotations(p, "sha")
    assert lots.height == 5
    assert lots["lot_id"].n_unique() == 5  # two identical allocations are two lots
    by_line: dict[int, str] = {}
    for e in errors:  # "path:LINE: field 'value': reason", one per problem
        line = int(e.split(":")[1])
        by_line[line] = by_line.get(line, "") + e
    assert sorted(by_line) == [7, 8, 9, 10]
    assert "amount_cents" in by_line[7]
    assert all(w in by_line[8] for w in ("invalid NIR", "received_date", "refund"))
    # 13 characters are not enough: the NIR rule of --holders / --balances
    assert "invalid NIR" in by_line[9] and "invalid NIR" in by_line[10]


def test_dotation_lots_expiry_and_refund(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(CSV)
    lots, errors = read_dotations(p, "sha")
    assert not errors
    meta = RunMeta(run_id="r1", code_version="c")
    # 2025-05-02: four lots received (not the September one), nothing expired
    e1 = plan_dotations(empty_entries(), lots, dt.date(2025, 5, 2), meta)
    assert sorted(e1["kind"].to_list()) == ["dotation"] * 4
    assert e1["amount_cents"].sum() == 210000
    assert set(e1["sub_ledger"]) == {"dotation"}
    # 2025-06-15: REGION's lot expired (deadline 2025-05-31, no refund)
    e2 = plan_dotations(e1, lots, dt.date(2025, 6, 15), RunMeta(run_id="r2", code_version="c"))
    assert e2.select("nir", "kind", "amount_cents").rows() == [
        (nir(1), "dotation_expiry", -50000)]
    # 2025-10-01: OPCO1's lot refunded, EMP2's lot received; REGION's not expired twice
    book = pl.concat([e1, e2])
    e3 = plan_dotations(book, lots, dt.date(2025, 10, 1), RunMeta(run_id="r3", code_version="c"))
    assert sorted(e3.select("nir", "kind", "amount_cents").rows()) == sorted([
        (nir(0), "dotation_refund", -100000), (nir(3), "dotation", 20000)])
    # idempotent
    e4 = plan_dotations(pl.concat([book, e3]), lots, dt.date(2025, 10, 1),
                        RunMeta(run_id="r4", code_version="c"))
    assert e4.height == 0


def test_dotations_through_a_run_stay_outside_the_ceiling(lake, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(CSV)
    bal = tmp_path / "b.csv"
    bal.write_text(f"nir,earned_balance_cents\n{nir(0)},450000\n")
    out = steps.credit(lake, 2024, compute_fn=FakeEngine(amounts_frame(BASE)), balances=bal,
                       dotations=p, as_of=dt.date(2025, 5, 2))
    ac = pl.read_parquet(Path(out.run_dir) / "annual_credits.parquet")
    assert ac.filter(pl.col("nir") == nir(0))["credit_cents"].item() == 50000  # not capped
    b = pl.read_parquet(Path(out.run_dir) / "balances.parquet").filter(pl.col("nir") == nir(0))
    assert b.row(0, named=True)["earned_balance_cents"] == 500000
    assert b.row(0, named=True)["dotation_balance_cents"] == 100000
    # a later run (new run date, no dotations file given) expires REGION's lot from the register
    out2 = steps.credit(lake, 2024, compute_fn=FakeEngine(amounts_frame(BASE)),
                        as_of=dt.date(2025, 6, 15))
    e = pl.read_parquet(Path(out2.run_dir) / "entries.parquet")
    assert e.select("nir", "kind", "amount_cents").rows() == [(nir(1), "dotation_expiry", -50000)]
    assert not pub.verify_ledger(lake)


def test_dotations_share_the_csv_reader_of_the_other_inputs(tmp_path):
    """Found by an acceptance pass: a misspelt column's data vanished (the lot was booked with
    no deadline), a row with missing fields was accepted, an amount near 2**63 overflowed the
    balances, and a non-UTF-8 byte was reported without its line."""
    head = "funder_id,nir,amount_cents,received_date,certification_codes,deadline,refund\n"
    ok = f"OPCO1,{nir(0)},100000,2025-04-20,,2025-06-30,true\n"
    cases = {
        "misspelt column": (head.replace("deadline", "dead_line") + ok, 1, "expected header"),
        "missing fields": (head + ok + f"F1,{nir(1)},500,2025-01-10\n", 3, "expected 7 fields"),
        "overflow": (head + ok + f"F1,{nir(1)},9223372036854775807,2025-01-10,,,\n", 3,
                     "overflow guard"),
        "latin-1": ((head + ok + "F\xc9,{},500,2025-01-10,,,\n".format(nir(1))).encode("latin-1"),
                    3, "not UTF-8"),
    }
    for name, (text, line, reason) in cases.items():
        p = tmp_path / f"{name}.csv"
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
        _, errors = read_dotations(p, "sha")
        assert any(f"{p}:{line}:" in e and reason in e for e in errors), (name, errors)
