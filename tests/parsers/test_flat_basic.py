"""Flat parser: blocks, parents, apostrophes, encodings, line endings, accounting."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from parsers.flat import parse_flat_file


def _check_accounting(p):
    f = p.files
    assert (f["lines_read"] == f["lines_parsed"] + f["lines_quarantined"]).all()
    q = p["quarantine"].filter(pl.col("scope") != "warning")
    assert q.height == p.lines_quarantined


def test_one_employee_every_table(tmp_path, dsn):
    p = parse_flat_file(dsn.write(tmp_path, "jan.dsn", dsn.envoi(dsn.declaration())))
    _check_accounting(p)
    assert p.lines_quarantined == 0, p["quarantine"]
    d = p["declarations"].row(0, named=True)
    assert d["nature"] == "01" and d["decl_month"] == dt.date(2025, 1, 1)
    assert d["siret"] == "12345678200012" and d["self_id"] == "050220251"
    assert d["n_individuals"] == 1 and not d["rejected"]
    ind = p["individuals"].row(0, named=True)
    assert ind["nir"] == "1850775123456" and ind["birth_date"] == dt.date(1985, 7, 15)
    c = p["contracts"].row(0, named=True)
    assert c["contract_no"] == "C0001" and c["quota_h"] == 15167 and c["ref_quota_h"] == 15167
    assert c["contract_start"] == dt.date(2020, 3, 1) and c["person_occ"] == ind["person_occ"]
    pay = p["pay"].sort("pay_type")
    assert pay["amount_cents"].to_list() == [250000, 250000]
    act = p["activities"].row(0, named=True)
    assert act["pay_type"] == "002" and act["measure_h"] == 15167 and act["contract_no"] == "C0001"
    assert act["period_start"] == dt.date(2025, 1, 1)
    assert p["employers"].row(0, named=True)["idcc"] == "1486"
    for table in ("individuals", "contracts", "pay", "activities"):
        row = p[table].row(0, named=True)
        assert row["decl_id"] == d["decl_id"] and row["file_sha256"] == d["file_sha256"]
        assert row["line_no"] > d["line_no"]


def test_parent_rule_worked_example(tmp_path, dsn):
    """§1.4: 30 (Individu1), 40, 40, 30 (Individu2), 40 -> contracts 1-2 to individu 1."""
    body = """
    S21.G00.30.001,'1850775123456'
    S21.G00.30.002,'UN'
    S21.G00.40.001,'01012020'
    S21.G00.40.009,'K0001'
    S21.G00.40.001,'01012021'
    S21.G00.40.009,'K0002'
    S21.G00.30.001,'2900569123457'
    S21.G00.30.002,'DEUX'
    S21.G00.40.001,'01012022'
    S21.G00.40.009,'K0003'
    S21.G00.60.001,'02'
    S21.G00.60.002,'14012025'
    S21.G00.60.003,'30042025'
    S21.G00.62.001,'31012025'
    S21.G00.62.002,'059'
    S21.G00.65.001,'632'
    S21.G00.65.002,'01012025'
    S21.G00.65.003,'30062025'
    """
    p = parse_flat_file(dsn.write(tmp_path, "x.dsn", dsn.envoi(dsn.declaration(body))))
    assert p.lines_quarantined == 0, p["quarantine"]
    c = p["contracts"].join(p["individuals"].select("person_occ", "last_name"), on="person_occ")
    assert dict(zip(c["contract_no"], c["last_name"])) == {"K0001": "UN", "K0002": "UN", "K0003": "DEUX"}
    for table in ("work_stoppages", "contract_ends", "suspensions"):
        row = p[table].row(0, named=True)
        assert row["contract_no"] == "K0003" and row["nir"] == "2900569123457", table
    assert p["work_stoppages"]["motif"].to_list() == ["02"]
    assert p["suspensions"]["end_date"].to_list() == [dt.date(2025, 6, 30)]


def test_apostrophes_inside_values(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("'DUPONT'", "'D'ARTAGNAN'").replace("'JEAN'", "'L'ÉLU'")
    p = parse_flat_file(dsn.write(tmp_path, "a.dsn", dsn.envoi(dsn.declaration(body))))
    ind = p["individuals"].row(0, named=True)
    assert ind["last_name"] == "D'ARTAGNAN" and ind["first_names"] == "L'ÉLU"


def test_encodings_and_line_endings(tmp_path, dsn):
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'JEAN'", "'JOËL'")))
    cases = {
        "latin1.dsn": ("latin-1", "\n", "JOËL", "cp1252"),
        "utf8.dsn": ("utf-8", "\r\n", "JOËL", "utf-8"),
    }
    for name, (enc, nl, expected, detected) in cases.items():
        p = parse_flat_file(dsn.write(tmp_path, name, text, enc, nl))
        assert p.files["encoding"][0] == detected
        assert p["individuals"]["first_names"][0] == expected
        assert p.lines_quarantined == 0 and p.warnings == 0
    # cp1252-only characters (euro sign, oe ligature)
    cp = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'JEAN'", "'CŒUR €'")))
    p = parse_flat_file(dsn.write(tmp_path, "cp.dsn", cp, "cp1252", "\r\n"))
    assert p["individuals"]["first_names"][0] == "CŒUR €"
    # damaged UTF-8: U+FFFD kept, line parsed, warning raised
    bad = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'JEAN'", "'J\ufffdR\u00d4ME'")))
    p = parse_flat_file(dsn.write(tmp_path, "damaged.dsn", bad, "utf-8"))
    assert p.lines_quarantined == 0 and p.warnings == 1
    assert p["quarantine"]["reason"].to_list() == ["damaged_characters"]
    assert p["individuals"]["first_names"][0] == "J\ufffdRÔME"
    # bytes undefined in cp1252 (0x81) fall back to Latin-1: never dropped, flagged
    raw = cp.encode("cp1252").replace("CŒUR".encode("cp1252"), b"C\x81UR")
    path = tmp_path / "undef.dsn"
    path.write_bytes(raw)
    p = parse_flat_file(path)
    assert p.files["encoding"][0] == "cp1252+latin-1" and p.warnings == 1
    assert p.lines_quarantined == 0


def test_utf8_byte_order_mark_is_not_text(tmp_path, dsn):
    """A UTF-8 file saved with a BOM (EF BB BF) parses like the same file without it: the mark
    used to glue onto line 1, which became malformed and took the whole envoi with it."""
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'JEAN'", "'JOËL'")))
    plain = parse_flat_file(dsn.write(tmp_path, "plain.dsn", text, "utf-8", "\r\n"))
    path = tmp_path / "bom.dsn"
    path.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.dsn").read_bytes())
    p = parse_flat_file(path)
    assert p.files["encoding"][0] == "utf-8-sig"
    assert p.lines_quarantined == 0 and p.declarations == 1 and p.declarations_rejected == 0
    assert p.lines_read == plain.lines_read
    assert p["individuals"]["first_names"][0] == "JOËL"
    lineage = ["file_sha256", "decl_id", "source_file"]  # which file: nothing else differs
    for table in ("individuals", "contracts", "declarations"):
        assert p[table].drop(lineage, strict=False).equals(
            plain[table].drop(lineage, strict=False)), table
    # a mark followed by Latin-1 bytes: dropped too, the body decoded as any other file
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("latin-1"))
    p = parse_flat_file(path)
    assert p.files["encoding"][0] == "cp1252+bom" and p.lines_quarantined == 0
    assert p["individuals"]["first_names"][0] == "JOËL"


def test_open_neodes_sample_ingests_cleanly(dsn):
    p = parse_flat_file(dsn.SAMPLE)
    _check_accounting(p)
    assert p.lines_quarantined == 0
    assert p.declarations == 3 and p.declarations_rejected == 0
    assert p["declarations"]["nature"].to_list() == ["07", "07", "07"]
    assert p["contract_ends"].height == 3
    assert p.lines_read == sum(1 for _ in dsn.SAMPLE.open("rb"))
    # the anonymised NIR '1234567890123' (month 45) is reported, not rejected: signalement
    reasons = set(p["quarantine"]["reason"])
    assert reasons == {"invalid_nir", "damaged_characters", "not_a_dsn_mensuelle"}
    # every declaration not used says why (contract.md): three FCTU, on their nature line
    fctu = p["quarantine"].filter(pl.col("reason") == "not_a_dsn_mensuelle")
    assert fctu.height == 3 and set(fctu["rubrique"]) == {"S20.G00.05.001"}
    assert set(fctu["scope"]) == {"warning"} and "nature 07" in fctu["detail"][0]
    assert set(p["quarantine"]["value_masked"].filter(p["quarantine"]["reason"] == "invalid_nir")) == {"123*"}


def test_latin1_transcoding_sparse_and_dense_accents():
    """Sparse accents are spliced into the ASCII runs, dense ones go through the codec:
    both give the codec's bytes, accents at the very start and end included."""
    from parsers.records import SPLICE_MAX_SHARE, to_utf8

    sparse = "É" + "S21.G00.30.004,'DUPONT'\n" * 300 + "Ç'ÏÿÉ"
    dense = "ÉÈÀÇ" * 50
    assert 5 * SPLICE_MAX_SHARE <= len(sparse)  # the splice path (its 5 accents are rare)
    for text in (sparse, dense):
        data = text.encode("latin-1")
        assert to_utf8(data) == (text.encode("utf-8"), "cp1252")


def test_lot_envelope_totals_are_checked(tmp_path, dsn):
    """A group trailer announcing more DSN than its group holds, or a lot cut before its S95
    trailer, is a warning on that line (ingestion acceptance pass M4: both passed silently);
    the real lot above gives neither."""
    text = dsn.SAMPLE.read_text("utf-8")
    lost = tmp_path / "lost.dsn"
    lost.write_text(text.replace("S96.G51.00.002,'3'", "S96.G51.00.002,'4'"), "utf-8")
    p = parse_flat_file(lost)
    _check_accounting(p)
    w = p["quarantine"].filter(pl.col("reason") == "lot_count_mismatch")
    assert w.select("line_no", "scope").rows() == [(432, "warning")] and p.lines_quarantined == 0
    assert "declares 4 DSN, the group holds 3" in w["detail"][0]
    cut = tmp_path / "cut.dsn"
    cut.write_text("".join(text.splitlines(keepends=True)[:-2]), "utf-8")
    w = parse_flat_file(cut)["quarantine"].filter(pl.col("reason") == "lot_truncated")
    assert w.select("line_no", "scope").rows() == [(441, "warning")]


def test_a_file_mixing_utf8_and_cp1252_lines_is_read_line_by_line(tmp_path, dsn):
    """A payroll file patched with one line from a cp1252 tool: decoded as one cp1252 file,
    every UTF-8 name became mojibake (GARÃ‡ON) with no warning (ingestion pass M2)."""
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'DUPONT'", "'GARÇON'")
                                     .replace("'JEAN'", "'CÉCILE'")))
    raw = text.encode("utf-8").replace("CÉCILE".encode("utf-8"), "CÉCILE".encode("cp1252"))
    path = tmp_path / "mixed.dsn"
    path.write_bytes(raw)
    p = parse_flat_file(path)
    assert p.files["encoding"][0] == "utf-8+cp1252" and p.lines_quarantined == 0
    ind = p["individuals"].row(0, named=True)
    assert (ind["last_name"], ind["first_names"]) == ("GARÇON", "CÉCILE")


@pytest.mark.parametrize("mangle, label", [
    (lambda b: b.replace(b"\r\n", b"\r"), "cp1252+cr"),
    (lambda b: b.replace(b"\r\n", b"\r", 20), "cp1252+cr"),  # some lines only (round 7)
    (lambda b: b.replace(b"\r\n", b"\r\r\n"), "cp1252+crcrlf"),
    (lambda b: b + b"\x1a", "cp1252+eof"),
    (lambda b: b.decode("cp1252").encode("utf-16"), "utf-16"),
])
def test_line_ends_and_utf16_a_transfer_leaves_are_mended(tmp_path, dsn, mangle, label):
    """CR-only ends, CR CR LF, a DOS end-of-file mark, UTF-16 with its mark: every line (or
    the last) was malformed with a reason that did not say why (ingestion pass L2)."""
    text = dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace("'DUPONT'", "'GARÇON'")))
    plain = parse_flat_file(dsn.write(tmp_path, "plain.dsn", text, "cp1252", "\r\n"))
    path = tmp_path / "mangled.dsn"
    path.write_bytes(mangle((tmp_path / "plain.dsn").read_bytes()))
    p = parse_flat_file(path)
    assert p.files["encoding"][0] == label
    assert p.lines_quarantined == 0 and p.lines_read == plain.lines_read
    assert p["individuals"]["last_name"].to_list() == ["GARÇON"]



def test_a_lot_ingested_with_other_files_counts_only_its_own_envois(tmp_path, dsn):
    """round-6 ingestion pass M1: the envois of the next files of a batch were counted in the
    lot's last group ("declares 0 DSN, the group holds 1: lost in transfer?")."""
    from parsers.ingest import ingest_paths
    src = tmp_path / "in"
    src.mkdir()
    (src / "a_lot.dsn").write_bytes(dsn.SAMPLE.read_bytes())
    dsn.write(src, "b.dsn", dsn.envoi(dsn.declaration()))
    r = ingest_paths([src], tmp_path / "DIR")
    assert "lot_count_mismatch" not in r.warnings_by_reason and r.files_ingested == 2


def test_a_utf16_file_cut_short_is_read_and_flagged(tmp_path, dsn):
    """round-7 ingestion pass H2: a UTF-16 file one byte short stopped the whole ingestion
    (nothing written, no file named)."""
    text = dsn.envoi(dsn.declaration())
    path = tmp_path / "cut.dsn"
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-16") + b"\x1a")
    p = parse_flat_file(path)
    assert p.files["encoding"][0].startswith("utf-16") and p.declarations == 1
    assert p.declarations_rejected == 0 and p.lines_quarantined == 1  # the broken tail, kept
    assert p["quarantine"]["reason"].to_list() == ["malformed_line"]


def test_a_cr_inside_a_value_is_no_line_end(tmp_path, dsn):
    """round-8 pass: mending lone CRs split 'MA<CR>RTIN' in two lines, and the S90 count then
    rejected the envoi; only a CR before the next rubrique id (or at the end) ends a line."""
    path = dsn.write(tmp_path, "cr_in_value.dsn", dsn.envoi(dsn.declaration()), "latin-1", "\r\n")
    path.write_bytes(path.read_bytes().replace(b"'DUPONT'", b"'DU\rPONT'"))
    p = parse_flat_file(path)
    assert p.declarations_rejected == 0 and "+cr" not in p.files["encoding"][0]


def test_a_utf16_file_one_byte_short_keeps_its_last_line(tmp_path, dsn):
    """The CR of the last line's CR-LF, before the U+FFFD of the half character the cut left,
    still ends the line: the S90 line stays well formed and the envoi is used."""
    path = tmp_path / "cut1.dsn"
    path.write_bytes(dsn.envoi(dsn.declaration()).replace("\n", "\r\n").encode("utf-16")[:-1])
    p = parse_flat_file(path)
    assert p.declarations == 1 and p.declarations_rejected == 0 and p.lines_quarantined == 1
