"""Flat NEODeS DSN text (``Sxx.Gyy.zz.aaa,'value'`` lines) -> typed tables + quarantine.

Files of a batch are parsed together (one vectorised pass over all their lines) to amortise
Polars' per-call overhead on the many small files a DSN year is made of.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from parsers.assemble import assemble
from parsers.codes import Reason, Scope
from parsers.lake_schema import DEFAULT_BUCKETS, TABLES
from parsers.model import ParsedFile
from parsers.records import has_damaged, read_split_batch, to_utf8

FORMAT_FLAT = "flat"


@dataclass(frozen=True)
class SourceBytes:
    """One input file already read: its bytes, its name and its checksum (its identity)."""

    source_file: str
    data: bytes
    sha256: str

    @classmethod
    def read(cls, path: Path) -> "SourceBytes":
        data = Path(path).read_bytes()
        return cls(str(path), data, hashlib.sha256(data).hexdigest())


def parse_flat_file(path: Path | str, n_buckets: int = DEFAULT_BUCKETS) -> ParsedFile:
    """Parse one flat DSN file (a lot, one or several envois)."""
    return parse_flat_sources([SourceBytes.read(Path(path))], n_buckets)


def parse_flat_sources(sources: list[SourceBytes], n_buckets: int = DEFAULT_BUCKETS) -> ParsedFile:
    """Parse several flat files in one vectorised pass."""
    utf8s, meta, damaged, empty = [], [], [], []
    for idx, src in enumerate(sources):
        utf8, encoding = to_utf8(src.data)
        utf8s.append(utf8)
        if has_damaged(utf8, encoding):
            damaged.append(idx)
        if not utf8:  # (a blank line is a line: quarantined as malformed, like any)
            empty.append(empty_file_row(src))
        meta.append({"file_idx": idx, "file_sha256": src.sha256, "source_file": src.source_file,
                     "size_bytes": len(src.data), "encoding": encoding, "format": FORMAT_FLAT})
    records = read_split_batch(utf8s, damaged_files=damaged)  # one pass for the whole batch
    del utf8s
    extra = pl.DataFrame(empty, schema={k: TABLES["quarantine"][k] for k in empty[0]}) if empty else None
    return assemble(records, pl.DataFrame(meta, schema_overrides={"size_bytes": pl.Int64}), n_buckets,
                    extra_quarantine=extra)


def empty_file_row(src: SourceBytes) -> dict:
    """The quarantine row of a file without a single line (0 bytes, or a byte-order mark): nothing to
    parse, but an operator must see it (a truncated transfer or an export that failed),
    not find it merely counted among the files ingested."""
    return {"source_file": src.source_file, "file_sha256": src.sha256, "line_no": None,
            "rubrique": None, "reason": Reason.EMPTY_FILE, "scope": Scope.FILE, "is_cause": True,
            "detail": f"no DSN line in the file ({len(src.data)} bytes)"}
