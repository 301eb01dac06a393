"""data/samples is reproducible, norm-shaped, and only its deliberate defects are quarantined."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl
import pytest

from generator.samples import EMPLOYERS, PEOPLE, luhn_ok, write_samples

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
NAME_RE = re.compile(r"^\d{14}_2025(0[1-9]|1[0-2])_[1-9]{2}(_v\d+|_test)?\.dsn$")
NIR_RE = re.compile(r"^[12][0-9]{2}(0[1-9]|1[0-2]|20|3[0-9]|4[0-2]|[5-9][0-9])"
                    r"(0[1-9]|[1-9][0-9]|2A|2B)(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})"
                    r"(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})$")


def test_samples_regenerate_byte_identically(tmp_path):
    write_samples(tmp_path)
    produced = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in SAMPLES.iterdir()}
    assert produced.keys() == committed.keys()
    different = [n for n in produced if produced[n] != committed[n]]
    assert not different, f"regenerate with `make samples`: {different}"


def test_file_names_and_s90_totals():
    dsn = sorted(SAMPLES.glob("*.dsn"))
    assert len(dsn) >= 48
    for path in dsn:
        assert NAME_RE.match(path.name), path.name
        lines = path.read_bytes().splitlines()
        assert lines[-2] == f"S90.G00.90.001,'{len(lines)}'".encode(), path.name


def test_identifiers_are_norm_valid():
    for e in EMPLOYERS.values():
        assert luhn_ok(e.siren) and luhn_ok(e.siret)
    for p in PEOPLE.values():
        if p.nir is None:
            assert p.ntt and p.ntt[1:10] == EMPLOYERS["E3"].siren
            continue
        assert NIR_RE.match(p.nir), p.nir
        assert p.nir[1:3] == f"{p.birth.year % 100:02d}"
        assert p.nir[5:7] not in ("2A", "2B") or p.birth.year >= 1976


def test_cp1252_file_holds_accented_names():
    text = next(SAMPLES.glob(f"{EMPLOYERS['E2'].siret}_202501_11.dsn")).read_bytes()
    assert "BŒUF".encode("cp1252") in text and b"D'ARTAGNAN" in text


def _defects() -> list[dict]:
    with open(SAMPLES / "broken_lines.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_only_deliberate_defects_are_quarantined(tmp_path):
    ingest = pytest.importorskip("parsers.ingest", reason="parsers.ingest not available yet")
    from parsers.lake import scan

    report = ingest.ingest_paths([SAMPLES], tmp_path)
    assert report.lines_read == report.lines_parsed + report.lines_quarantined
    q = scan(tmp_path, "quarantine").collect()
    allowed: dict[str, set[int]] = {}
    for d in _defects():
        allowed.setdefault(d["file"], set()).update(
            range(int(d["block_first_line"]), int(d["block_last_line"]) + 1))
    # the test envoi is listed as not used (a warning on its S10.G00.00.005 line), not a defect
    tests = q.filter(pl.col("reason") == "test_envoi")
    assert [Path(f).name for f in tests["source_file"]] == ["41263504700027_202507_11_test.dsn"]
    q = q.filter(pl.col("reason") != "test_envoi")
    got: dict[str, set[int]] = {}
    for src, line_no, scope in q.select("source_file", "line_no", "scope").iter_rows():
        got.setdefault(Path(src).name, set()).add(line_no)
    for name, lines in got.items():
        assert name in allowed, f"unexpected quarantine in {name}: {sorted(lines)[:10]}"
        assert lines <= allowed[name], f"{name}: {sorted(lines - allowed[name])[:10]}"
    for d in _defects():  # each deliberate defect is caught, at its line, with its rubrique
        assert int(d["line_no"]) in got.get(d["file"], set()), d
        row = q.filter(pl.col("source_file").str.ends_with(d["file"])
                       & (pl.col("line_no") == int(d["line_no"])) & pl.col("is_cause"))
        assert row["rubrique"].to_list() == [d["rubrique"]], d
    assert report.declarations_rejected == 0
