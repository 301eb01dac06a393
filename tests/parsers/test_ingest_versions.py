"""Lake writes, re-ingest no-op, archive, typed scans, A&R substitution, fractions, tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from parsers.archive import bundle_batch_id
from parsers.ingest import ingest_paths
from parsers.lake import scan
from parsers.lake_schema import TABLES
from pipeline.versions import current_declarations, only_current, version_status


def test_ingest_lake_layout_and_reingest_noop(tmp_path, dsn):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    dsn.write(src, "jan.dsn", dsn.envoi(dsn.declaration()))
    dsn.write(src / "sub", "sample.dsn", dsn.SAMPLE.read_text("utf-8"), "utf-8")
    (src / "notes.pdf").write_bytes(b"%PDF")
    root = tmp_path / "DIR"
    r = ingest_paths([src], root, n_buckets=4)
    assert r.files_seen == 2 and r.files_ingested == 2 and r.files_skipped_other == 1
    assert r.skipped_other_examples == [str(src / "notes.pdf")]
    assert r.lines_read == r.lines_parsed + r.lines_quarantined and r.lines_quarantined == 0
    assert r.declarations == 4 and r.to_dict()["warnings"] == r.warnings
    pay_parts = list((root / "lake" / "pay").rglob("part-*.parquet"))
    assert pay_parts and all("month=2025-01" in str(p) and "bucket=" in str(p) for p in pay_parts)
    bundles = list((root / "archive" / "dsn").iterdir())  # one bundle for the one commit
    assert [bundle_batch_id(b) for b in bundles] == r.batches
    archived = pl.read_parquet(bundles[0])
    assert sorted(archived["file_sha256"]) == sorted(scan(root, "files").collect()["file_sha256"])
    assert {bytes(d) for d in archived["data"]} == {p.read_bytes() for p in src.rglob("*.dsn")}
    pay = scan(root, "pay").collect()
    assert pay.schema["decl_month"] == pl.Date and pay.schema["bucket"] == pl.Int32
    assert pay["amount_cents"].sum() == 500000
    before = {t: scan(root, t).collect().height for t in TABLES}
    again = ingest_paths([src], root, n_buckets=4)
    assert again.files_skipped_duplicate == 2 and again.files_ingested == 0
    assert sorted(again.skipped_duplicate_examples) == sorted(map(str, src.rglob("*.dsn")))
    assert {t: scan(root, t).collect().height for t in TABLES} == before


def test_a_file_named_explicitly_is_ingested_whatever_its_name(tmp_path, dsn):
    """The norm sets no file-name rule: a DSN named without a DSN suffix, given on the
    command line, was silently skipped ("files seen 0", exit 0). In a folder the suffix
    still decides (its other files are counted and named in the report)."""
    src = tmp_path / "in"
    src.mkdir()
    bare = dsn.write(src, "x.dsn", dsn.envoi(dsn.declaration())).rename(src / "DSN_202501")
    dat = dsn.write(src, "y.dsn", dsn.envoi(dsn.declaration(siren="552100554"))).rename(
        src / "lot.dat")
    r = ingest_paths([bare, dat], tmp_path / "DIR")
    assert (r.files_seen, r.files_ingested, r.declarations, r.lines_quarantined) == (2, 2, 2, 0)
    r = ingest_paths([src], tmp_path / "DIR2")
    assert (r.files_seen, r.files_skipped_other) == (0, 2)
    assert r.skipped_other_examples == [str(bare), str(dat)]


def test_scan_empty_table_has_schema(tmp_path):
    df = scan(tmp_path, "activities").collect()
    assert df.height == 0 and df.schema == pl.Schema(TABLES["activities"])


def test_annule_et_remplace_fractions_and_test_files(tmp_path, dsn):
    src = tmp_path / "in"
    src.mkdir()
    first = dsn.declaration(order="1", built="05022025")
    # type 03 replaces the version built 05/02/2025 with order 1 (id 050220251)
    amended = dsn.declaration(dsn.EMPLOYEE.replace("'2500.00'", "'2600.00'"), type_="03",
                              order="2", built="06022025", replaced="050220251")
    frac1 = dsn.declaration(fraction="12", siren="552100554")
    frac2 = dsn.declaration(fraction="22", siren="552100554", order="2")
    test_file = dsn.declaration(siren="732829320")
    dsn.write(src, "a.dsn", dsn.envoi(first))
    dsn.write(src, "b.dsn", dsn.envoi(amended))
    dsn.write(src, "c.dsn", dsn.envoi(frac1, frac2))
    dsn.write(src, "d.dsn", dsn.envoi(test_file, test=True))
    root = tmp_path / "DIR"
    ingest_paths([src], root)
    all_decls = scan(root, "declarations").collect()
    assert all_decls.height == 5  # replaced and test versions stay in the lake for audit
    cur = current_declarations(root).collect()
    assert cur.height == 3
    by_siret = cur.group_by("siret").agg(pl.col("fraction").sort())
    assert dict(zip(by_siret["siret"], by_siret["fraction"].to_list())) == {
        "12345678200012": ["11"], "55210055400012": ["12", "22"]}
    assert cur.filter(pl.col("siret") == "12345678200012")["decl_type"].to_list() == ["03"]
    pay = only_current(scan(root, "pay"), root).collect()
    amounts = pay.filter(pl.col("siret") == "12345678200012")["amount_cents"].unique().to_list()
    assert amounts == [260000]
    assert pay.filter(pl.col("decl_month") != dt.date(2025, 1, 1)).height == 0
    # the test envoi is listed in the quarantine as not used (a warning: its lines are parsed)
    q = scan(root, "quarantine").collect()
    test_rows = q.filter(pl.col("reason") == "test_envoi")
    assert test_rows.select("rubrique", "scope", "is_cause").rows() == [
        ("S10.G00.00.005", "warning", False)]
    assert test_rows["source_file"].str.ends_with("d.dsn").all()


def test_replacement_arriving_before_original(tmp_path, dsn):
    """The A&R link works whatever the arrival order; same declaration received twice is one."""
    src = tmp_path / "in"
    src.mkdir()
    amended = dsn.declaration(type_="03", order="2", built="06022025", replaced="050220251")
    dsn.write(src, "1.dsn", dsn.envoi(amended))
    root = tmp_path / "DIR"
    ingest_paths([src], root)
    dsn.write(src, "2.dsn", dsn.envoi(dsn.declaration(order="1")))
    dsn.write(src, "3.dsn", dsn.envoi(dsn.declaration(order="1")) + "\n")  # same content, other bytes
    ingest_paths([src], root)
    cur = current_declarations(root).collect()
    assert cur["decl_type"].to_list() == ["03"]


def test_every_declaration_version_not_used_says_why(tmp_path, dsn):
    """Contract: the quarantine lists every declaration not used, and why. A version
    superseded by a later one is decided for the whole lake (the A&R may arrive first), so
    ``version_status`` names, per usable declaration not current, who supersedes it: the A&R
    that names it (a chain A <- B <- C: each by the next), else the key's current version."""
    src = tmp_path / "in"
    src.mkdir()
    first = dsn.declaration(order="1", built="05022025")  # self id 050220251
    amended = dsn.declaration(type_="03", order="2", built="06022025", replaced="050220251")
    again = dsn.declaration(type_="03", order="3", built="07022025", replaced="060220252")
    older = dsn.declaration(siren="552100554", order="1")  # the same key sent twice, no link:
    newer = dsn.declaration(siren="552100554", order="5")  # the latest order number wins
    for name, decl in [("a", first), ("c", again), ("b", amended), ("o", older), ("n", newer)]:
        dsn.write(src, f"{name}.dsn", dsn.envoi(decl))
    dsn.write(src, "t.dsn", dsn.envoi(dsn.declaration(siren="732829320"), test=True))
    root = tmp_path / "DIR"
    ingest_paths([src], root)
    st = version_status(scan(root, "declarations")).collect()
    name = {d: Path(f).stem for d, f in zip(st["decl_id"], st["source_file"])}
    got = {name[d]: (c, name.get(by), why) for d, c, by, why in
           st.select("decl_id", "current", "superseded_by", "superseded_reason").rows()}
    assert got == {"a": (False, "b", "replaced_declaration"),
                   "b": (False, "c", "replaced_declaration"),
                   "c": (True, None, None),
                   "o": (False, "n", "older_version"),
                   "n": (True, None, None),
                   "t": (False, None, None)}  # the test envoi: a test_envoi warning already
    assert set(st.filter("current")["decl_id"]) == set(current_declarations(root).collect()["decl_id"])


def test_a_dsn_mensuelle_cannot_be_simply_cancelled(tmp_path, dsn):
    """Type 04 ("déclaration annule") is for natures 07/08/09 only (S20.G00.05.002 CCH-13): on
    a DSN mensuelle it is rejected and quarantined, not taken as the month's latest version
    (which wiped the month's individuals). 02/05 only for a mensuelle, 03 never for 08."""
    src = tmp_path / "in"
    src.mkdir()
    dsn.write(src, "a.dsn", dsn.envoi(dsn.declaration(order="1")))
    cancel = dsn.declaration("", type_="04", order="2", built="06022025", replaced="050220251")
    dsn.write(src, "b.dsn", dsn.envoi(cancel))
    root = tmp_path / "DIR"
    ingest_paths([src], root)
    decls = scan(root, "declarations").collect().sort("order_no")
    assert decls.select("decl_type", "rejected", "reject_reason").rows() == [
        ("01", False, None), ("04", True, "type_not_allowed_for_nature")]
    cur = current_declarations(root).collect()
    assert cur["decl_type"].to_list() == ["01"]
    q = scan(root, "quarantine").collect().filter(pl.col("is_cause"))
    assert q.select("rubrique", "reason").rows() == [("S20.G00.05.002",
                                                      "type_not_allowed_for_nature")]
    # the other pairs of the rule, parsed on their own
    from parsers.flat import parse_flat_file
    for i, (nature, type_, ok) in enumerate([("01", "05", True), ("07", "04", True),
                                             ("09", "04", True), ("07", "02", False),
                                             ("08", "03", False), ("01", "03", True)]):
        p = parse_flat_file(dsn.write(tmp_path, f"t{i}.dsn", dsn.envoi(dsn.declaration(
            "" if type_ in ("02", "05") else dsn.EMPLOYEE, nature=nature, type_=type_,
            replaced="050220251" if type_ in ("03", "04", "05") else None))))
        reasons = set(p["quarantine"]["reason"])  # (a warning on a signalement: 07, 08)
        assert ("type_not_allowed_for_nature" not in reasons) == ok, (nature, type_, reasons)


def test_a_declared_month_not_on_the_1st_does_not_break_the_batch(tmp_path, dsn):
    """S20.G00.05.005 = 15042025 is an invalid_date (the declaration is rejected) but its rows
    belong to April like the others: two days of one month used to make two partitions of one
    path collide, fail the whole ingestion and leave an unreadable part (found by fuzzing)."""
    src = tmp_path / "in"
    src.mkdir()
    dsn.write(src, "a.dsn", dsn.envoi(dsn.declaration(month="01042025")))
    dsn.write(src, "b.dsn", dsn.envoi(dsn.declaration(month="15042025", siren="552100554")))
    root = tmp_path / "DIR"
    report = ingest_paths([src], root)
    assert report.declarations == 2 and report.declarations_rejected == 1
    decls = scan(root, "declarations").collect()
    assert decls["decl_month"].unique().to_list() == [dt.date(2025, 4, 1)]
    q = scan(root, "quarantine").collect().filter(pl.col("is_cause"))
    assert q.select("rubrique", "reason").rows() == [("S20.G00.05.005", "invalid_date")]


def test_a_flat_file_starting_with_a_stray_angle_bracket_stays_flat(tmp_path, dsn):
    """The suffix decides: a .dsn file is flat text whatever its first byte (it was sent to
    the XML reader, and none of its lines were accounted for)."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "lt.dsn").write_text("<" + dsn.envoi(dsn.declaration()), encoding="latin-1")
    report = ingest_paths([src], tmp_path / "DIR")
    files = scan(tmp_path / "DIR", "files").collect()
    assert files["format"].to_list() == ["flat"]
    assert report.lines_read == dsn.envoi(dsn.declaration()).count("\n")
    assert report.lines_read == report.lines_parsed + report.lines_quarantined
    assert report.lines_quarantined > 0  # line 1 malformed: the S10 part, so the envoi
