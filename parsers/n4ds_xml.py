"""N4DS XML form of the DSN (namespace http://www.cnav.fr/n4ds) -> the same tables.

Elements are named after blocks (``S21_G00_30``) and rubriques (``S21_G00_30_001``); dates
may be ``xs:date``; values may carry ``originLineNumber`` / ``originalValue`` pointing back to
the flat file (datatypes_P26.xsd). The reader streams the document with lxml ``iterparse``
(clearing elements as it goes), emits the same (line_no, rubrique, value) records as the flat
reader — ``originalValue`` when present, xs:date converted back to JJMMAAAA — and reuses the
vectorised structure/validation/table code. Block elements are explicit in XML, so each block
start element forces a new occurrence (``force_new``) instead of relying on rubrique order.

Differences from flat input: records keep DOCUMENT order (the XML nesting is the structure);
``line_no`` is ``originLineNumber`` when every value of the file carries one and they increase
in document order, else the rank of the value in the document for the whole file, with an
``origin_line_numbers_ignored`` warning (a file numbering some values only — e.g. the platform's
S10.G00.95 / S20.G00.96 tracking blocks — mixed the two schemes: sorted by them, a whole envoi
was rejected, or an Activité split in two); the S90 *line* total is not checked (the XML may be a
subset of the flat file), the S90 declaration count is.

Nothing is dropped unseen: a leaf element that is not named like a rubrique (a misspelt
``S21_G00_53_02``) is a record like any other, so the norm's checks quarantine it
(``unknown_rubrique``) as they would the flat line; a document whose root is not in the N4DS
namespace is not read as one (``not_n4ds_xml``, file scope); a syntax error names its line.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from pathlib import Path

import polars as pl
from lxml import etree

from parsers.assemble import assemble
from parsers.codes import Reason, Scope
from parsers.flat import SourceBytes
from parsers.lake_schema import DEFAULT_BUCKETS, TABLES
from parsers.model import ParsedFile
from parsers.records import DAMAGED_PATTERN

N4DS_NS = "http://www.cnav.fr/n4ds"
FORMAT_XML = "n4ds_xml"
_RUBRIQUE_TAG = re.compile(r"^S\d{2}_G\d{2}_\d{2}_\d{3}$")
_BLOCK_TAG = re.compile(r"^S\d{2}_G\d{2}_\d{2}$")
_XS_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?$")
ORIGIN_LINE = "originLineNumber"
ORIGINAL_VALUE = "originalValue"
# XSD of the DSN mensuelle in N4DS XML (France Travail, P26; copied in parsers/norm/xsd_P26 with
# its datatypes file under the name its import expects). Checking it needs the whole tree in
# memory (~10x the file), so larger files are read without it and say so.
XSD_PATH = Path(__file__).parent / "norm" / "xsd_P26" / "Bloc3_NAT_DSN_MENSUELLE_P26.xsd"
XSD_MAX_BYTES = 64 * 1024 * 1024
XSD_MAX_FINDINGS = 50  # per file: the first ones locate the problem; the count says the rest
REASON_XSD = "xsd_violation"
REASON_XSD_SKIPPED = "xsd_not_checked"
_XSD_ELEMENT = re.compile(r"Element '(?:\{[^}]*\})?(S\d{2}_G\d{2}_\d{2}(?:_\d{3})?)'")


class NotN4DS(ValueError):
    """The document's root element is not in the N4DS namespace."""

    def __init__(self, tag: str, line: int | None):
        super().__init__(f"root element {tag} is not in the N4DS namespace {N4DS_NS}")
        self.line = line


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _to_flat_value(text: str) -> str:
    m = _XS_DATE.match(text)
    return f"{m.group(3)}{m.group(2)}{m.group(1)}" if m else text


def read_xml_records(data: bytes) -> pl.DataFrame:
    """Stream the XML; one record per rubrique element, in document order."""
    events = etree.iterparse(io.BytesIO(data), events=("start", "end"), remove_comments=True,
                             huge_tree=True)
    return _records(events, stream=True)


def _records(events, stream: bool) -> pl.DataFrame:
    """Records from (event, element) pairs: ``iterparse`` (``stream``: processed elements are
    freed as it goes) or ``iterwalk`` over a tree already in memory (left intact)."""
    origin_no: list[int | None] = []
    rubrique: list[str] = []
    value: list[str] = []
    force_new: list[bool] = []
    pending_block = False
    rank = 0
    root = True
    for event, elem in events:
        name = _local(elem.tag) if isinstance(elem.tag, str) else ""
        if event == "start":
            if root and not (isinstance(elem.tag, str) and elem.tag.startswith(f"{{{N4DS_NS}}}")):
                raise NotN4DS(str(elem.tag), elem.sourceline)
            root = False
            if _BLOCK_TAG.match(name):
                pending_block = True
            continue
        if _RUBRIQUE_TAG.match(name) or (name and len(elem) == 0
                                         and not _BLOCK_TAG.match(name)):
            # a rubrique, or a leaf element named like none (misspelt): a record all the
            # same, which the norm's checks quarantine (unknown_rubrique), never dropped
            rank += 1
            origin = elem.get(ORIGIN_LINE)
            raw = elem.get(ORIGINAL_VALUE)
            text = raw if raw is not None else _to_flat_value((elem.text or "").strip())
            origin_no.append(int(origin) if origin and origin.isdigit() else None)
            rubrique.append(name.replace("_", "."))
            value.append(text)
            force_new.append(pending_block)
            pending_block = False
            if stream:
                elem.clear()
        elif stream and _BLOCK_TAG.match(name):
            elem.clear()
            parent = elem.getparent()
            if parent is not None:  # free the processed siblings
                while elem.getprevious() is not None:
                    del parent[0]
    return pl.DataFrame({"origin": origin_no, "rubrique": rubrique, "value": value,
                         "force_new": force_new},
                        schema={"origin": pl.Int64, "rubrique": pl.String, "value": pl.String,
                                "force_new": pl.Boolean})


def line_numbers(rec: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """``rec`` (document order) with ``line_no``: the ``originLineNumber`` of every value when
    all carry one, increasing; else the document rank of each (and why, for a warning)."""
    origin = rec.get_column("origin")
    n, known = rec.height, rec.height - origin.null_count()
    increasing = known == n and (n < 2 or bool((origin.diff().drop_nulls() > 0).all()))
    if increasing:
        return rec.rename({"origin": "line_no"}), None
    ranks = rec.drop("origin").with_row_index("line_no", offset=1).with_columns(
        pl.col("line_no").cast(pl.Int64))
    if known == 0:
        return ranks, None  # no numbering at all: ranks, as documented
    why = (f"originLineNumber on {known} of {n} values" if known < n
           else "originLineNumber not increasing in document order")
    return ranks, f"{why}: line numbers are the values' ranks in the document"


@lru_cache(maxsize=1)
def n4ds_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def read_checked(src: SourceBytes) -> tuple[pl.DataFrame, list[dict]]:
    """Records and XSD findings of one XML file, the document parsed ONCE: a file under
    ``XSD_MAX_BYTES`` is parsed into a tree, validated and walked; a larger one is streamed
    (bounded memory) and flagged as not checked."""
    if len(src.data) > XSD_MAX_BYTES:
        records, doc = read_xml_records(src.data), None
    else:
        doc = etree.parse(io.BytesIO(src.data), etree.XMLParser(huge_tree=True,
                                                                 remove_comments=True))
        records = _records(etree.iterwalk(doc, events=("start", "end")), stream=False)
    records, why = line_numbers(records)
    findings = xsd_findings(src, doc)
    if why:
        findings.append(_warning(src, Reason.ORIGIN_LINES_IGNORED, why))
    return records, findings


def _warning(src: SourceBytes, reason: str, detail: str, line_no: int | None = None,
             rubrique: str | None = None) -> dict:
    """A quarantine WARNING row about an XML file (the lines are still parsed)."""
    return {"source_file": src.source_file, "file_sha256": src.sha256, "scope": Scope.WARNING,
            "is_cause": False, "line_no": line_no, "rubrique": rubrique, "reason": reason,
            "detail": detail}


def xsd_findings(src: SourceBytes, doc) -> list[dict]:
    """XSD findings of one parsed XML file (``doc``; None: too large, not checked) as
    quarantine WARNING rows (line, element, message).

    Why warnings, not rejections: the XSD is the France Travail transmission schema (block
    order and cardinalities of its own flow); whether a value is usable is decided by the norm's
    checks that every line goes through anyway (the same as for flat files). A violation is
    still kept and counted, never silently ignored."""
    if doc is None:
        return [_warning(src, REASON_XSD_SKIPPED, f"file over {XSD_MAX_BYTES // 2**20} MiB: "
                                                  f"not checked against {XSD_PATH.name}")]
    schema = n4ds_schema()
    if schema.validate(doc):
        return []
    errors = list(schema.error_log)
    rows = []
    for e in errors[:XSD_MAX_FINDINGS]:
        m = _XSD_ELEMENT.search(e.message)
        rows.append(_warning(src, REASON_XSD, f"{XSD_PATH.name}: {e.message}"[:400], e.line,
                             m.group(1).replace("_", ".") if m else None))
    if len(errors) > XSD_MAX_FINDINGS:
        rows[-1]["detail"] += f" (+{len(errors) - XSD_MAX_FINDINGS} more findings)"
    return rows


def parse_xml_file(path, n_buckets: int = DEFAULT_BUCKETS) -> ParsedFile:
    """Parse one N4DS XML DSN file."""
    from pathlib import Path

    return parse_xml_sources([SourceBytes.read(Path(path))], n_buckets)


def parse_xml_sources(sources: list[SourceBytes], n_buckets: int = DEFAULT_BUCKETS) -> ParsedFile:
    frames, meta, broken = [], [], []
    for idx, src in enumerate(sources):
        meta.append({"file_idx": idx, "file_sha256": src.sha256, "source_file": src.source_file,
                     "size_bytes": len(src.data), "encoding": "xml", "format": FORMAT_XML})
        try:
            rec, findings = read_checked(src)
        except (etree.XMLSyntaxError, NotN4DS) as exc:
            syntax = isinstance(exc, etree.XMLSyntaxError)
            broken.append({"source_file": src.source_file, "file_sha256": src.sha256,
                           "reason": Reason.UNREADABLE_FILE if syntax else Reason.NOT_N4DS_XML,
                           "detail": f"XML syntax error: {exc}" if syntax else str(exc),
                           "scope": Scope.FILE, "is_cause": True,
                           "line_no": exc.lineno if syntax else exc.line, "rubrique": None})
            continue
        broken.extend(findings)
        frames.append(rec.with_columns(pl.lit(idx, pl.Int64).alias("file_idx")))
    if frames:
        rec = pl.concat(frames)
    else:
        rec = pl.DataFrame(schema={"line_no": pl.Int64, "rubrique": pl.String, "value": pl.String,
                                   "force_new": pl.Boolean, "file_idx": pl.Int64})
    rec = rec.with_columns(
        (pl.lit("") + pl.col("rubrique") + pl.lit(",'") + pl.col("value") + pl.lit("'")).alias("raw"),
        pl.col("value").is_null().alias("malformed"),
        pl.col("value").str.contains(DAMAGED_PATTERN).fill_null(False).alias("damaged"),
    )
    extra = pl.DataFrame(broken, schema={k: TABLES["quarantine"][k] for k in
                                         ("source_file", "file_sha256", "line_no", "rubrique",
                                          "reason", "detail", "scope", "is_cause")}
                         ) if broken else None
    return assemble(rec, pl.DataFrame(meta, schema_overrides={"size_bytes": pl.Int64}), n_buckets,
                    extra_quarantine=extra, check_s90_lines=False)
