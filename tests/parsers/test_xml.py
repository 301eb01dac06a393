"""N4DS XML reader: same tables as the flat reader, originLineNumber kept as lineage."""

from __future__ import annotations

import datetime as dt

import polars as pl

from parsers.n4ds_xml import parse_xml_file

# Hand-written N4DS fragment (element naming from XSD-P26: blocks S21_G00_30, rubriques
# S21_G00_30_001, dates as xs:date, originLineNumber pointing back to the flat file).
N4DS = """<?xml version="1.0" encoding="UTF-8"?>
<DSN xmlns="http://www.cnav.fr/n4ds">
  <S10_G00_00>
    <S10_G00_00_001 originLineNumber="1">PAIE-EXPERT</S10_G00_00_001>
    <S10_G00_00_005 originLineNumber="2">02</S10_G00_00_005>
    <S10_G00_00_006 originLineNumber="3">P26V01</S10_G00_00_006>
    <S10_G00_00_008 originLineNumber="4">01</S10_G00_00_008>
  </S10_G00_00>
  <S20_G00_05>
    <S20_G00_05_001 originLineNumber="5">01</S20_G00_05_001>
    <S20_G00_05_002 originLineNumber="6">01</S20_G00_05_002>
    <S20_G00_05_003 originLineNumber="7">11</S20_G00_05_003>
    <S20_G00_05_004 originLineNumber="8">1</S20_G00_05_004>
    <S20_G00_05_005 originLineNumber="9" originalValue="01032026">2026-03-01</S20_G00_05_005>
    <S20_G00_05_007 originLineNumber="10">2026-04-05</S20_G00_05_007>
    <S21_G00_06>
      <S21_G00_06_001 originLineNumber="11">123456782</S21_G00_06_001>
      <S21_G00_11>
        <S21_G00_11_001 originLineNumber="12">00012</S21_G00_11_001>
        <S21_G00_30>
          <S21_G00_30_001 originLineNumber="13">2900569123457</S21_G00_30_001>
          <S21_G00_30_002 originLineNumber="14">L'HÔPITAL</S21_G00_30_002>
          <S21_G00_30_006 originLineNumber="15">1990-05-20</S21_G00_30_006>
          <S21_G00_40>
            <S21_G00_40_001 originLineNumber="16">2024-09-01</S21_G00_40_001>
            <S21_G00_40_009 originLineNumber="17">CT-2024-01</S21_G00_40_009>
            <S21_G00_40_011 originLineNumber="18">10</S21_G00_40_011>
            <S21_G00_40_013 originLineNumber="19">75.84</S21_G00_40_013>
          </S21_G00_40>
          <S21_G00_50>
            <S21_G00_50_001 originLineNumber="20">2026-03-31</S21_G00_50_001>
            <S21_G00_51>
              <S21_G00_51_001 originLineNumber="21">2026-03-01</S21_G00_51_001>
              <S21_G00_51_002 originLineNumber="22">2026-03-31</S21_G00_51_002>
              <S21_G00_51_010 originLineNumber="23">CT-2024-01</S21_G00_51_010>
              <S21_G00_51_011 originLineNumber="24">002</S21_G00_51_011>
              <S21_G00_51_013 originLineNumber="25">1234.56</S21_G00_51_013>
              <S21_G00_53>
                <S21_G00_53_001 originLineNumber="26">01</S21_G00_53_001>
                <S21_G00_53_002 originLineNumber="27">75.84</S21_G00_53_002>
              </S21_G00_53>
              <S21_G00_53>
                <S21_G00_53_001 originLineNumber="28">01</S21_G00_53_001>
                <S21_G00_53_002 originLineNumber="29">-3.50</S21_G00_53_002>
              </S21_G00_53>
            </S21_G00_51>
          </S21_G00_50>
        </S21_G00_30>
      </S21_G00_11>
    </S21_G00_06>
  </S20_G00_05>
  <S90_G00_90>
    <S90_G00_90_001 originLineNumber="30">40</S90_G00_90_001>
    <S90_G00_90_002 originLineNumber="31">1</S90_G00_90_002>
  </S90_G00_90>
</DSN>
"""


def test_xml_reader_produces_the_same_tables(tmp_path):
    path = tmp_path / "dsn.xml"
    path.write_text(N4DS, encoding="utf-8")
    p = parse_xml_file(path)
    assert p.files["format"][0] == "n4ds_xml" and p.lines_read == 31
    assert p.lines_quarantined == 0, p["quarantine"]
    d = p["declarations"].row(0, named=True)
    assert d["decl_month"] == dt.date(2026, 3, 1) and d["self_id"] == "050420261"
    assert d["norm_version"] == "P26V01" and d["line_no"] == 5
    ind = p["individuals"].row(0, named=True)
    assert ind["last_name"] == "L'HÔPITAL" and ind["birth_date"] == dt.date(1990, 5, 20)
    assert ind["line_no"] == 13
    act = p["activities"].sort("line_no")
    # explicit block elements: two 53 occurrences under one 51
    assert act["measure_h"].to_list() == [7584, -350]
    assert act["contract_no"].to_list() == ["CT-2024-01", "CT-2024-01"]
    assert p["pay"]["amount_cents"].to_list() == [123456]


def test_broken_xml_is_a_file_quarantine(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(N4DS[:500], encoding="utf-8")
    p = parse_xml_file(path)
    q = p["quarantine"]
    assert q["scope"].to_list() == ["file"] and q["reason"].to_list() == ["unreadable_file"]


def test_xsd_findings_are_kept_as_warnings_with_their_xml_line(tmp_path):
    """The fixture lacks blocks the France Travail XSD requires (S10_G00_00_002…, the
    declarations under the envoi): each finding is a warning naming the XML line and element;
    every line is still parsed (the norm's checks decide what is usable)."""
    path = tmp_path / "dsn.xml"
    path.write_text(N4DS, encoding="utf-8")
    p = parse_xml_file(path)
    q = p["quarantine"].filter(pl.col("reason") == "xsd_violation")
    assert q.height >= 1 and set(q["scope"]) == {"warning"}
    first = q.sort("line_no").row(0, named=True)
    assert first["line_no"] == 5 and first["rubrique"] == "S10.G00.00.005"
    assert "Bloc3_NAT_DSN_MENSUELLE_P26.xsd" in first["detail"]
    assert p.lines_read == p.lines_parsed == 31 and p.warnings == q.height


def test_xsd_is_not_checked_on_huge_files_and_says_so(tmp_path, monkeypatch):
    from parsers import n4ds_xml
    monkeypatch.setattr(n4ds_xml, "XSD_MAX_BYTES", 100)
    path = tmp_path / "dsn.xml"
    path.write_text(N4DS, encoding="utf-8")
    q = parse_xml_file(path)["quarantine"]
    assert q.filter(pl.col("reason") == "xsd_not_checked").height == 1
    assert q.filter(pl.col("reason") == "xsd_violation").height == 0


def test_broken_xml_names_its_line(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(N4DS.replace("</S21_G00_30_002>", "</S21_G00_30_0X2>"), encoding="utf-8")
    q = parse_xml_file(path)["quarantine"].row(0, named=True)
    line = next(i for i, t in enumerate(N4DS.splitlines(), 1) if "S21_G00_30_002" in t)
    assert (q["reason"], q["scope"], q["line_no"]) == ("unreadable_file", "file", line)


def test_xml_outside_the_n4ds_namespace_is_not_read_as_a_dsn(tmp_path):
    for name, text in (("other.xml", N4DS.replace("http://www.cnav.fr/n4ds", "urn:example:x")),
                       ("none.xml", N4DS.replace(' xmlns="http://www.cnav.fr/n4ds"', ""))):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        p = parse_xml_file(path)
        q = p["quarantine"]
        assert q.select("reason", "scope", "line_no").rows() == [("not_n4ds_xml", "file", 2)]
        assert p["individuals"].height == 0 and p["declarations"].height == 0


def test_a_misspelt_rubrique_element_is_quarantined_and_its_block_set_aside(tmp_path):
    path = tmp_path / "typo.xml"
    path.write_text(N4DS.replace('<S21_G00_53_002 originLineNumber="27">75.84</S21_G00_53_002>',
                                 '<S21_G00_53_02 originLineNumber="27">75.84</S21_G00_53_02>'),
                    encoding="utf-8")
    p = parse_xml_file(path)
    assert p.lines_read == 31 and p.lines_read == p.lines_parsed + p.lines_quarantined
    # the typo is its own anomaly, and it leaves the Activité without its mandatory measure
    # (XSD minOccurs=1): the block's hours cannot be used, so the declaration is rejected
    # with that cause rather than credited without them (parsers.block_checks)
    q = p["quarantine"].filter(pl.col("is_cause"))
    assert q.select("line_no", "rubrique", "reason").rows() == [
        (26, "S21.G00.53.001", "incomplete_block"), (27, "S21.G00.53.02", "unknown_rubrique")]
    assert "lacks S21.G00.53.002" in q["detail"][0] and p.declarations_rejected == 1


def test_values_numbered_in_part_keep_the_document_structure(tmp_path):
    """originLineNumber is optional on every value (datatypes_P26.xsd): a file numbering all
    but a few (a platform's tracking values, a second Activité) mixed two numbering schemes
    when sorted by them — a whole envoi rejected ("declaration_without_s20"), an Activité
    split in two rows. Records keep the document order; line numbers fall back to ranks for
    the whole file, with a warning that says why."""
    import re
    # numbers of the original flat file (after a lot envelope: from line 101)
    numbered = re.sub(r'originLineNumber="(\d+)"',
                      lambda m: f'originLineNumber="{int(m.group(1)) + 100}"', N4DS)
    full = parse_xml_file(_write(tmp_path / "full.xml", numbered))
    assert full["individuals"]["line_no"].to_list() == [113]
    # the S20 values and the second Activité lose their numbers
    partial = re.sub(r'(<S20_G00_05_00[1-4]|<S21_G00_53_002) originLineNumber="1(05|06|07|08|29)"',
                     r"\1", numbered)
    p = parse_xml_file(_write(tmp_path / "partial.xml", partial))
    assert p.lines_read == p.lines_parsed == 31 and p.declarations_rejected == 0
    q = p["quarantine"].filter(pl.col("reason") == "origin_line_numbers_ignored")
    assert q.select("scope", "detail").rows() == [
        ("warning", "originLineNumber on 26 of 31 values: line numbers are the values' ranks "
                    "in the document")]
    for table in ("declarations", "individuals", "contracts", "pay", "activities"):
        cols = [c for c in full[table].columns  # all but the line-based ids
                if c not in ("line_no", "decl_id", "file_sha256", "source_file")
                and not c.endswith("_occ")]
        assert p[table].select(cols).equals(full[table].select(cols)), table
    assert p["activities"]["measure_h"].to_list() == [7584, -350]
    # not increasing in document order: ranks too
    swapped = N4DS.replace('originLineNumber="13"', 'originLineNumber="99"')
    p = parse_xml_file(_write(tmp_path / "swapped.xml", swapped))
    assert p["individuals"]["line_no"].to_list() == [13] and p["quarantine"].filter(
        pl.col("reason") == "origin_line_numbers_ignored")["detail"].str.contains(
        "not increasing").all()


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_an_n4ds_file_named_dsn_is_read_as_xml(tmp_path):
    """ingestion pass L7: named .dsn, its XML declaration was quarantined line by line."""
    from parsers.ingest import ingest_paths
    path = tmp_path / "in" / "n4ds.dsn"
    path.parent.mkdir()
    path.write_text(N4DS, encoding="utf-8")
    r = ingest_paths([path], tmp_path / "DIR")
    assert r.lines_quarantined == 0 and r.declarations == 1
