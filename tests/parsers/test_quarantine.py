"""Every quarantine reason, its scope, and the line accounting that must always hold."""

from __future__ import annotations

import polars as pl
import pytest

from parsers.flat import parse_flat_file


def parse(tmp_path, dsn, text, name="f.dsn"):
    p = parse_flat_file(dsn.write(tmp_path, name, text))
    f = p.files
    assert (f["lines_read"] == f["lines_parsed"] + f["lines_quarantined"]).all()
    assert p["quarantine"].filter(pl.col("scope") != "warning").height == p.lines_quarantined
    assert p.lines_read == text.count("\n")
    return p


def causes(p):
    return p["quarantine"].filter(pl.col("is_cause"))


@pytest.mark.parametrize("old, new, reason, scope", [
    ("S21.G00.30.019,'M001'", "S21.G00.30.019 'M001' (no comma)", "malformed_line", "line"),
    ("S21.G00.30.019,'M001'", "S21.G00.30.019,M001", "malformed_line", "line"),
    ("S21.G00.30.019,'M001'", "S21.G0.30.019,'M001'", "malformed_line", "line"),
    ("S21.G00.30.019,'M001'", "S21.G00.30.019,''", "malformed_line", "line"),  # empty value
    # an enrichment rubrique (no length bound in the norm) with an empty value: malformed too
    ("S21.G00.30.019,'M001'", "S21.G00.30.019,'M001'\nS21.G00.30.300,''", "malformed_line", "line"),
    ("S21.G00.30.019,'M001'", "S21.G00.30.099,'M001'", "unknown_rubrique", "line"),
    # a misspelt id inside the block does not split it (it opened an individual without NIR
    # at the next line and rejected the declaration: ingestion acceptance pass M1)
    ("S21.G00.30.004,'JEAN'", "S21.G00.30.040,'JEAN'", "unknown_rubrique", "line"),
    # an unknown id just before a block's first line is not a block of its own, and a required
    # rubrique that lost a quote is present (round-6 ingestion pass H1, H2: both rejected the
    # declaration as an incomplete block)
    ("S21.G00.50.004,'1950.00'\nS21.G00.51.001", "S21.G00.50.004,'1950.00'\nS21.G00.51.099,'Y'\n"
     "S21.G00.51.001", "unknown_rubrique", "line"),
    ("S21.G00.51.013,'2500.00'", "S21.G00.51.013,'2500.00", "malformed_line", "line"),
    # ... also when it is the block's first line (round-7 pass H1)
    ("S21.G00.53.001,'01'", "S21.G00.53.001,'01", "malformed_line", "line"),
    # ... and when its id cannot be read (a stray character before it: round-8 pass H1)
    ("S21.G00.53.001,'01'", "xS21.G00.53.001,'01'", "malformed_line", "line"),
    ("S21.G00.40.012,'151.67'", "S21.G00.40.012,'151,67'", "bad_format", "line"),
    ("S21.G00.40.007,'01'", "S21.G00.40.007,'77'", "bad_enum", "line"),
    ("S21.G00.40.017,'1486'", "S21.G00.40.017,'14867'", "bad_format", "line"),
    ("S21.G00.51.001,'01012025'", "S21.G00.51.001,'32012025'", "invalid_date", "declaration"),
    # CCH-11: département 20 only for a birth year < 1976, 96 only for a birth year < 1968.
    ("S21.G00.30.001,'1850775123456'", "S21.G00.30.001,'1850720123456'", "invalid_nir", "declaration"),
    ("S21.G00.30.001,'1850775123456'", "S21.G00.30.001,'1850796123456'", "invalid_nir", "declaration"),
    # S21.G00.30.006 CCH-11: the NIR's year equals the birth year (checked on the birth date).
    ("S21.G00.30.006,'15071985'", "S21.G00.30.006,'15071986'", "nir_birth_year_mismatch", "line"),
    ("S21.G00.30.001,'1850775123456'", "S21.G00.30.001,'1999999999999'", "invalid_nir", "declaration"),
    ("S21.G00.30.001,'1850775123456'", "S21.G00.30.001,'1852A75123456'", "invalid_nir", "declaration"),
    ("S21.G00.30.001,'1850775123456'", "S21.G00.30.001,'1850775999999'", "invalid_nir", "declaration"),
])
def test_each_reason(tmp_path, dsn, old, new, reason, scope):
    body = dsn.EMPLOYEE.replace(old, new, 1)
    assert body != dsn.EMPLOYEE
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    c = causes(p)
    assert c["reason"].to_list() == [reason] and c["scope"].to_list() == [scope]
    decl = p["declarations"].row(0, named=True)
    if scope == "line":
        assert p.lines_quarantined == 1 and not decl["rejected"]
        assert p["individuals"].height == 1  # declaration still used
    else:
        assert decl["rejected"] and decl["reject_reason"] == reason
        assert p.lines_quarantined == p.lines_read - 11 - 2  # all but S10 header and S90
        assert p["individuals"].height == 0 and p["pay"].height == 0
        assert set(p["quarantine"]["scope"]) == {"declaration"}
    # the rubrique is kept whenever the line names one (even a malformed line, quotes missing)
    named = {"S21.G0.30.019,'M001'": None,  # no readable id
             "xS21.G00.53.001,'01'": None,
             "S21.G00.30.019,'M001'\nS21.G00.30.300,''": "S21.G00.30.300",
             "S21.G00.50.004,'1950.00'\nS21.G00.51.099,'Y'\nS21.G00.51.001": "S21.G00.51.099"}
    assert c["rubrique"].to_list() == [named.get(new, new[:14])]
    if reason == "invalid_nir":
        masked = c["value_masked"][0]
        assert masked.endswith("*") and len(masked) == 4


def test_bad_non_key_value_leaves_typed_column_null(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("S21.G00.40.012,'151.67'", "S21.G00.40.012,'151,67'")
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    c = p["contracts"].row(0, named=True)
    assert c["ref_quota_h"] is None and c["quota_h"] == 15167


def test_enrichment_rubriques_are_kept_knowingly(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("S21.G00.30.019,'M001'",
                                "S21.G00.30.019,'M001'\nS21.G00.30.300,'1850775123456'")
    text = dsn.envoi(dsn.declaration(body)).replace(
        "S20.G00.05.010,'01'", "S20.G00.05.010,'01'\nS20.G00.96.902,'1'").replace(
        "S10.G00.02.002,'MME MARTIN'", "S10.G00.02.002,'MME MARTIN'\nS10.G00.95.900,'FLUX'")
    text = text.replace("S90.G00.90.001,'", "S90.G00.90.001,'X").replace(
        "'X", "'", 1)  # keep text valid; totals recomputed below
    lines = text.strip().split("\n")
    lines[-2] = f"S90.G00.90.001,'{len(lines)}'"
    p = parse(tmp_path, dsn, "\n".join(lines) + "\n")
    assert p.lines_quarantined == 0 and p.warnings == 0


def test_s90_mismatch_rejects_whole_envoi(tmp_path, dsn):
    text = dsn.envoi(dsn.declaration(), dsn.declaration(order="2", siren="552100554"), s90_lines=10)
    p = parse(tmp_path, dsn, text)
    assert p.lines_quarantined == p.lines_read
    assert set(p["quarantine"]["scope"]) == {"envoi"}
    assert set(p["quarantine"]["reason"]) == {"s90_count_mismatch"}
    assert p["declarations"]["rejected"].to_list() == [True, True]
    assert p["individuals"].height == 0
    # the cause is the S90 total line
    assert causes(p).select("rubrique", "line_no").rows() == [
        ("S90.G00.90.001", p.lines_read - 1)]
    wrong_count = dsn.envoi(dsn.declaration(), s90_decls=2)
    p = parse(tmp_path, dsn, wrong_count, "g.dsn")
    assert p.declarations_rejected == 1


def test_anomaly_in_s10_rejects_envoi(tmp_path, dsn):
    text = dsn.envoi(dsn.declaration()).replace("S10.G00.00.008,'01'", "S10.G00.00.008,'07'")
    p = parse(tmp_path, dsn, text)
    assert p.lines_quarantined == p.lines_read
    assert causes(p)["reason"].to_list() == ["bad_enum"]


def test_missing_s90_rejects_envoi(tmp_path, dsn):
    text = "\n".join(dsn.envoi(dsn.declaration()).strip().split("\n")[:-2]) + "\n"
    p = parse(tmp_path, dsn, text)
    assert p.lines_quarantined == p.lines_read and p.declarations_rejected == 1
    # every row says why (the detail was null: ingestion acceptance pass L3)
    assert p["quarantine"]["detail"].str.contains("no S90 totals block").all()


def test_declaration_without_s20(tmp_path, dsn):
    text = dsn.envoi(dsn.employer() + dsn.EMPLOYEE)  # S21 blocks with no S20 before them
    p = parse(tmp_path, dsn, text)
    assert p.declarations == 0 and p.lines_quarantined == p.lines_read
    assert "declaration_without_s20" in set(p["quarantine"]["reason"])


def test_one_rejected_declaration_keeps_the_others(tmp_path, dsn):
    bad = dsn.EMPLOYEE.replace("S21.G00.51.002,'31012025'", "S21.G00.51.002,'31022025'", 1)
    text = dsn.envoi(dsn.declaration(bad), dsn.declaration(order="2", siren="552100554"))
    p = parse(tmp_path, dsn, text)
    assert p["declarations"]["rejected"].to_list() == [True, False]
    assert p["individuals"].height == 1
    assert set(p["quarantine"]["scope"]) == {"declaration"}


def test_lines_outside_envoi_and_blank_lines(tmp_path, dsn):
    text = "GARBAGE\n" + dsn.envoi(dsn.declaration()) + "\n"
    p = parse(tmp_path, dsn, text)
    assert p.lines_quarantined == 2 and p.declarations_rejected == 0
    assert set(p["quarantine"]["reason"]) == {"malformed_line"}


def test_blank_line_inside_an_envoi_is_not_a_rubrique(tmp_path, dsn):
    """S90.001 counts rubriques: a blank line inside the envoi (LF or CR-LF, or spaces) is
    quarantined alone; it used to make the count differ and reject the whole envoi."""
    text = dsn.envoi(dsn.declaration())
    lines = text.split("\n")
    for blank in ("", "   "):
        holed = "\n".join(lines[:20] + [blank] + lines[20:])
        p = parse(tmp_path, dsn, holed)
        assert p.lines_quarantined == 1 and p.declarations_rejected == 0
        assert p["quarantine"].select("line_no", "reason").rows() == [(21, "malformed_line")]
        assert p["individuals"].height == 1
    # a real rubrique too many still rejects the envoi
    extra = "\n".join(lines[:20] + ["S21.G00.30.019,'M002'"] + lines[20:])
    assert parse(tmp_path, dsn, extra)["quarantine"]["reason"].unique().to_list() == [
        "s90_count_mismatch"]


def test_individual_without_a_usable_identifier_rejects_its_declaration(tmp_path, dsn):
    """A NIR line without its quotes, or no NIR and no NTT at all: the person's rows cannot be
    attributed, so the declaration is rejected as with an invalid NIR (they used to be parsed
    with a null NIR and vanish from the crediting without a trace)."""
    nir = "S21.G00.30.001,'1850775123456'"
    no_quotes = dsn.EMPLOYEE.replace(nir, "S21.G00.30.001,1850775123456")
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(no_quotes)))
    assert p.declarations_rejected == 1 and p["individuals"].height == 0
    assert causes(p).select("rubrique", "reason").sort("reason").rows() == [
        ("S21.G00.30.006", "individual_without_identifier"), ("S21.G00.30.001", "malformed_line")]
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(dsn.EMPLOYEE.replace(nir + "\n", ""))))
    assert p.declarations_rejected == 1
    assert causes(p)["reason"].to_list() == ["individual_without_identifier"]
    assert p["declarations"]["reject_reason"].to_list() == ["individual_without_identifier"]
    # an NTT alone is an identifier (linked later to a NIR): not rejected
    ntt = dsn.EMPLOYEE.replace(nir + "\n", "").replace(
        "S21.G00.30.019,'M001'", "S21.G00.30.019,'M001'\nS21.G00.30.020,'1123456782ABC001'")
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(ntt)))
    assert p.declarations_rejected == 0 and p["individuals"]["ntt"].to_list() == ["1123456782ABC001"]


def test_empty_file_is_reported(tmp_path, dsn):
    """A 0-byte file (a truncated transfer) has no line to quarantine, yet must not pass as
    merely ingested: one file-scope row says so; the line accounting is untouched."""
    (tmp_path / "empty.dsn").write_bytes(b"")
    (tmp_path / "bom_only.dsn").write_bytes(b"\xef\xbb\xbf")
    for name in ("empty.dsn", "bom_only.dsn"):
        p = parse_flat_file(tmp_path / name)
        assert p.lines_read == 0 and p.lines_quarantined == 0 and p.declarations == 0
        q = p["quarantine"].row(0, named=True)
        assert p["quarantine"].height == 1 and q["reason"] == "empty_file"
        assert (q["scope"], q["line_no"], q["source_file"]) == ("file", None, str(tmp_path / name))
    assert parse_flat_file(dsn.write(tmp_path, "blank.dsn", "\n"))["quarantine"]["reason"].to_list() \
        == ["malformed_line"]  # a blank line is a line, not an empty file


def test_unknown_norm_version_is_a_warning(tmp_path, dsn):
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(), version="P27V01"))
    assert p.lines_quarantined == 0 and p.warnings == 1
    assert p["quarantine"]["reason"].to_list() == ["unknown_norm_version"]
    assert p["individuals"].height == 1


def test_unknown_contract_number_sets_aside_the_pay_block(tmp_path, dsn):
    body = dsn.EMPLOYEE.replace("S21.G00.51.010,'C0001'\nS21.G00.51.011,'002'",
                                "S21.G00.51.010,'C9999'\nS21.G00.51.011,'002'")
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    c = causes(p)
    assert c["reason"].to_list() == ["unknown_contract_number"] and c["scope"].to_list() == ["line"]
    assert p.lines_quarantined == 8  # the 51 block (5 lines) and its 53 activity (3 lines)
    assert set(p["quarantine"]["reason"]) == {"unknown_contract_number"}
    assert not p["declarations"]["rejected"][0]
    assert p["pay"]["pay_type"].to_list() == ["001"] and p["activities"].height == 0


# ---- block structure faults (parsers.block_checks, CT2025 §3.2-§3.3): each used to be parsed
# and reach no one; now it rejects its declaration with a cause naming the block, and a child
# written after its parent's siblings still belongs to the parent before it

STOPPAGE = """
S21.G00.60.001,'01'
S21.G00.60.002,'14012025'
S21.G00.60.003,'31012025'
"""


@pytest.mark.parametrize("old, new, reason, block_line, lacking", [
    # rubriques out of order: 53.002 before 53.001 splits the Activité in two incomplete parts
    ("S21.G00.53.001,'01'\nS21.G00.53.002,'151.67'", "S21.G00.53.002,'151.67'\nS21.G00.53.001,'01'",
     "incomplete_block", "S21.G00.53", "S21.G00.53.001"),
    # a pay block without its contract number
    ("S21.G00.51.010,'C0001'\nS21.G00.51.011,'001'", "S21.G00.51.011,'001'",
     "incomplete_block", "S21.G00.51", "S21.G00.51.010"),
    # an activity without its type
    ("S21.G00.53.001,'01'\n", "", "incomplete_block", "S21.G00.53", "S21.G00.53.001"),
    # 40.013 written before 40.012: a second contract occurrence without start date or number
    ("S21.G00.40.012,'151.67'\nS21.G00.40.013,'151.67'", "S21.G00.40.013,'151.67'\nS21.G00.40.012,'151.67'",
     "incomplete_block", "S21.G00.40", "S21.G00.40.001, S21.G00.40.009"),
])
def test_an_incomplete_block_rejects_its_declaration(tmp_path, dsn, old, new, reason, block_line,
                                                      lacking):
    body = dsn.EMPLOYEE.replace(old, new, 1)
    assert body != dsn.EMPLOYEE
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    c = causes(p).filter(pl.col("reason") == reason)
    assert c.height >= 1 and set(c["scope"]) == {"declaration"}, causes(p)
    assert c["detail"][0].startswith(block_line) and f"lacks {lacking}" in c["detail"][0]
    assert p["declarations"]["rejected"].to_list() == [True]
    assert p["pay"].height == 0 and p["activities"].height == 0


def test_a_contract_before_its_individual_is_a_block_without_parent(tmp_path, dsn):
    lines = dsn.EMPLOYEE.strip().splitlines()
    contract = [ln for ln in lines if ln.startswith("S21.G00.40.")]
    rest = [ln for ln in lines if not ln.startswith("S21.G00.40.")]
    body = "\n".join(contract + rest) + "\n"
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    c = causes(p).filter(pl.col("reason") == "block_without_parent")
    assert c.height == 1 and c["rubrique"][0] == "S21.G00.40.001"
    assert "follows no S21.G00.30 block" in c["detail"][0]
    assert p["declarations"]["rejected"].to_list() == [True] and p["contracts"].height == 0


def test_an_absence_written_after_the_pay_blocks_belongs_to_the_contract_before(tmp_path, dsn):
    """CT2025 §3.2: "un bloc enfant se rapporte toujours au bloc parent qui le précède,
    directement ou indirectement" — an arrêt after the individual's pay blocks is its
    contract's (it was stored with no contract and never counted)."""
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(dsn.EMPLOYEE + STOPPAGE.strip() + "\n")))
    assert p.lines_quarantined == 0
    ws = p["work_stoppages"]
    assert ws.height == 1 and ws["contract_no"].to_list() == ["C0001"]
    assert ws["contract_occ"].to_list() == p["contracts"]["contract_occ"].to_list()


@pytest.mark.parametrize("nature", ["99", "1"])
def test_a_corrupt_nature_code_rejects_the_declaration(tmp_path, dsn, nature):
    """A nature code that is itself an anomaly is no signalement (whose anomalies are only
    warnings): its key line rejects the declaration, said as such (ingestion pass M3)."""
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(nature=nature)))
    c = causes(p)
    assert c["rubrique"].to_list() == ["S20.G00.05.001"] and c["scope"].to_list() == ["declaration"]
    assert p["declarations"]["rejected"].to_list() == [True]


def test_blanks_after_the_closing_quote_are_named(tmp_path, dsn):
    """ingestion pass L6: the detail hid an invisible cause."""
    text = dsn.envoi(dsn.declaration()).replace("S21.G00.30.019,'M001'\n",
                                                "S21.G00.30.019,'M001'  \n")
    p = parse(tmp_path, dsn, text)
    c = causes(p)
    assert c["reason"].to_list() == ["malformed_line"]
    assert c["detail"][0].startswith("blanks after the closing quote")



def test_an_enrichment_line_before_a_block_s_first_line_is_kept(tmp_path, dsn):
    """round-6 ingestion pass H2: a platform's 9xx line written before the contract's first
    line formed an "incomplete" block and rejected the declaration."""
    body = dsn.EMPLOYEE.replace("S21.G00.40.001,'01032020'",
                                "S21.G00.40.950,'Y'\nS21.G00.40.001,'01032020'")
    p = parse(tmp_path, dsn, dsn.envoi(dsn.declaration(body)))
    assert p.lines_quarantined == 0 and p["contracts"].height == 1
