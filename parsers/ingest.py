"""Ingestion entry point: files or folders of DSN -> lake, in bounded-memory batches.

Re-ingesting a file already in ``lake/files`` (same sha256) is a no-op; each newly ingested
input is copied byte-for-byte to ``DIR/archive/dsn/<sha256>``. Files are parsed in batches
(``BATCH_MAX_BYTES`` / ``BATCH_MAX_FILES``) so a year of DSN never sits in memory at once;
each batch writes one part file per partition and commits by writing its ``lake/files`` part.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from parsers import codes
from parsers.flat import SourceBytes, parse_flat_sources
from parsers.lake import archive_input, known_checksums, remove_orphans, write_parsed
from parsers.lake_schema import DEFAULT_BUCKETS
from parsers.model import ParsedFile, concat_parsed

# Parse batch: bounds the memory of the line-level frames (~15-20x the text size at peak).
BATCH_MAX_BYTES = 24 * 1024 * 1024
BATCH_MAX_FILES = 2000
# Commit batch: the typed tables of several parse batches (~1/10 of the text) are written
# together, as ONE lake batch. Each write is one Parquet part per (table, month, bucket) and
# costs ~2 ms whatever its size, so writing per parse batch would dominate the run.
COMMIT_MAX_BYTES = 256 * 1024 * 1024
COMMIT_MAX_FILES = 4000
XML_SUFFIX = ".xml"
XML_MAGIC = b"<"


@dataclass
class IngestReport:
    """Counts of one ``ingest_paths`` call (line accounting: read = parsed + quarantined)."""

    files_seen: int = 0
    files_ingested: int = 0
    files_skipped_duplicate: int = 0
    files_skipped_other: int = 0  # not *.dsn/*.txt/*.edi/*.xml
    declarations: int = 0
    declarations_rejected: int = 0
    lines_read: int = 0
    lines_parsed: int = 0
    lines_quarantined: int = 0
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    warnings_by_reason: dict[str, int] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    bytes_ingested: int = 0

    def add(self, parsed: ParsedFile) -> None:
        self.files_ingested += parsed.files.height
        self.declarations += parsed.declarations
        self.declarations_rejected += parsed.declarations_rejected
        self.lines_read += parsed.lines_read
        self.lines_parsed += parsed.lines_parsed
        self.lines_quarantined += parsed.lines_quarantined
        self.warnings += parsed.warnings
        self.bytes_ingested += int(parsed.files["size_bytes"].sum() or 0)
        for reason, n in parsed.quarantine_by_reason().items():
            self.quarantine_by_reason[reason] = self.quarantine_by_reason.get(reason, 0) + n
        all_reasons = parsed.quarantine_by_reason(include_warnings=True)
        for reason, n in all_reasons.items():
            w = n - parsed.quarantine_by_reason().get(reason, 0)
            if w:
                self.warnings_by_reason[reason] = self.warnings_by_reason.get(reason, 0) + w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def discover(paths: Iterable[Path | str]) -> tuple[list[Path], int]:
    """Input files under ``paths`` (recursive, sorted) and the count of other files skipped."""
    found: list[Path] = []
    skipped = 0
    for p in map(Path, paths):
        candidates = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in candidates:
            if f.suffix.lower() in codes.INPUT_SUFFIXES:
                found.append(f)
            else:
                skipped += 1
    return found, skipped


def _batches(files: list[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for f in files:
        fsize = f.stat().st_size
        if batch and (size + fsize > BATCH_MAX_BYTES or len(batch) >= BATCH_MAX_FILES):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += fsize
    if batch:
        yield batch


def _is_xml(src: SourceBytes) -> bool:
    return src.source_file.lower().endswith(XML_SUFFIX) or src.data.lstrip()[:1] == XML_MAGIC


def parse_sources(sources: list[SourceBytes], n_buckets: int = DEFAULT_BUCKETS) -> ParsedFile:
    """Parse a batch of flat and/or N4DS XML sources."""
    from parsers.n4ds_xml import parse_xml_sources

    flat = [s for s in sources if not _is_xml(s)]
    xml = [s for s in sources if _is_xml(s)]
    parts = []
    if flat:
        parts.append(parse_flat_sources(flat, n_buckets))
    if xml:
        parts.append(parse_xml_sources(xml, n_buckets))
    return concat_parsed(parts) if parts else ParsedFile()


def new_batch_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def ingest_paths(paths: list[Path], root_dir: Path, n_buckets: int = DEFAULT_BUCKETS,
                 on_progress: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Ingest files/folders of DSN (flat or N4DS XML) into ``root_dir/lake``."""
    root_dir = Path(root_dir)
    report = IngestReport()
    remove_orphans(root_dir)
    known = known_checksums(root_dir)
    files, report.files_skipped_other = discover(paths)
    report.files_seen = len(files)
    pending: list[ParsedFile] = []
    pending_bytes = pending_files = 0

    def commit() -> None:
        nonlocal pending, pending_bytes, pending_files
        if not pending:
            return
        parsed = concat_parsed(pending)
        batch_id = new_batch_id()
        write_parsed(parsed, root_dir, batch_id, n_buckets)
        report.batches.append(batch_id)
        report.add(parsed)
        pending, pending_bytes, pending_files = [], 0, 0
        if on_progress is not None:
            on_progress(report)

    for batch in _batches(files):
        sources = []
        for f in batch:
            src = SourceBytes.read(f)
            if src.sha256 in known:
                report.files_skipped_duplicate += 1
                continue
            known.add(src.sha256)
            sources.append(src)
        if not sources:
            continue
        pending.append(parse_sources(sources, n_buckets))
        for src in sources:
            archive_input(root_dir, src.sha256, src.data)
        pending_bytes += sum(len(src.data) for src in sources)
        pending_files += len(sources)
        del sources
        if pending_bytes >= COMMIT_MAX_BYTES or pending_files >= COMMIT_MAX_FILES:
            commit()
    commit()
    return report
