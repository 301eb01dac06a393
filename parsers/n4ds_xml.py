"""N4DS XML form of the DSN (namespace http://www.cnav.fr/n4ds) -> the same tables.

Elements are named after blocks (``S21_G00_30``) and rubriques (``S21_G00_30_001``); dates
may be ``xs:date``; values may carry ``originLineNumber`` / ``originalValue`` pointing back to
the flat file (datatypes_P26.xsd). The reader streams the document with lxml ``iterparse``
(clearing elements as it goes), emits the same (line_no, rubrique, value) records as the flat
reader — ``originalValue`` when present, xs:date converted back to JJMMAAAA — and reuses the
vectorised structure/validation/table code. Block elements are explicit in XML, so each block
start element forces a new occurrence (``force_new``) instead of relying on rubrique order.

Differences from flat input: ``line_no`` is ``originLineNumber`` when present, else the
rank of the rubrique element in the document; the S90 *line* total is not checked (the XML
may be a subset of the flat file), the S90 declaration count is.
"""

from __future__ import annotations

import io
import re

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


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _to_flat_value(text: str) -> str:
    m = _XS_DATE.match(text)
    return f"{m.group(3)}{m.group(2)}{m.group(1)}" if m else text


def read_xml_records(data: bytes) -> pl.DataFrame:
    """Stream the XML; one record per rubrique element, in document order."""
    line_no: list[int] = []
    rubrique: list[str] = []
    value: list[str] = []
    force_new: list[bool] = []
    pending_block = False
    rank = 0
    for event, elem in etree.iterparse(io.BytesIO(data), events=("start", "end"),
                                       remove_comments=True, huge_tree=True):
        name = _local(elem.tag) if isinstance(elem.tag, str) else ""
        if event == "start":
            if _BLOCK_TAG.match(name):
                pending_block = True
            continue
        if _RUBRIQUE_TAG.match(name):
            rank += 1
            origin = elem.get(ORIGIN_LINE)
            raw = elem.get(ORIGINAL_VALUE)
            text = raw if raw is not None else _to_flat_value((elem.text or "").strip())
            line_no.append(int(origin) if origin and origin.isdigit() else rank)
            rubrique.append(name.replace("_", "."))
            value.append(text)
            force_new.append(pending_block)
            pending_block = False
            elem.clear()
        elif _BLOCK_TAG.match(name):
            elem.clear()
            parent = elem.getparent()
            if parent is not None:  # free the processed siblings
                while elem.getprevious() is not None:
                    del parent[0]
    return pl.DataFrame({"line_no": line_no, "rubrique": rubrique, "value": value,
                         "force_new": force_new},
                        schema={"line_no": pl.Int64, "rubrique": pl.String, "value": pl.String,
                                "force_new": pl.Boolean})


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
            rec = read_xml_records(src.data)
        except etree.XMLSyntaxError as exc:
            broken.append({"source_file": src.source_file, "file_sha256": src.sha256,
                           "reason": Reason.UNREADABLE_FILE, "detail": f"XML syntax error: {exc}",
                           "scope": Scope.FILE, "is_cause": True})
            continue
        frames.append(rec.sort("line_no", maintain_order=True)
                      .with_columns(pl.lit(idx, pl.Int64).alias("file_idx")))
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
                                         ("source_file", "file_sha256", "reason", "detail",
                                          "scope", "is_cause")}) if broken else None
    return assemble(rec, pl.DataFrame(meta, schema_overrides={"size_bytes": pl.Int64}), n_buckets,
                    extra_quarantine=extra, check_s90_lines=False)
