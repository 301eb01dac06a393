"""Ingestion entry point: files or folders of DSN -> lake, in bounded-memory batches.

Re-ingesting a file already in ``lake/files`` (same sha256) is a no-op; each newly ingested
input's exact bytes go to its commit's archive bundle (``parsers.archive``). Files are parsed in batches
(``BATCH_MAX_BYTES`` / ``BATCH_MAX_FILES``) so a year of DSN never sits in memory at once,
in the order of the month they declare (fewer, larger parts), optionally in a pool of parse
processes (``workers``); the tables of several parse batches are committed together by a
background writer thread: the archive bundle, one part file per partition, then the
``lake/files`` part (commit). A replay feeds archived inputs (``archive.ArchivedBatch``) through
the same path instead of files.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import re
import uuid
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from parsers import codes
from parsers.compact import compact, pending_months, recover_compactions
from parsers.flat import SourceBytes, parse_flat_sources
from parsers.archive import ArchivedBatch, BundleWriter, read_archived
from parsers.lake import (KnownChecksums, known_checksums, remove_orphans,
                          write_parsed)
from parsers.lake_schema import DEFAULT_BUCKETS
from parsers.model import ParsedFile, concat_parsed

# Parse batch: bounds the memory of the line-level frames (~15-20x the text size at peak).
BATCH_MAX_BYTES = 24 * 1024 * 1024
BATCH_MAX_FILES = 2000
SKIPPED_EXAMPLES = 5  # names of skipped files the report keeps
# Commit batch: the typed tables of several parse batches (~1/10 of the text) are written
# together, as ONE lake batch. Each write is one Parquet part per (table, month, bucket) and
# costs ~1-2 ms whatever its size, so writing per parse batch would dominate the run. The
# parts of a commit grow with the bucket count: commits grow with it too (``commit_limits``),
# up to ``COMMIT_SCALE_MAX`` times these (2 GiB of text: ~0.2 GB of tables held).
COMMIT_MAX_BYTES = 256 * 1024 * 1024
COMMIT_MAX_FILES = 4000
COMMIT_SCALE_BUCKETS = 16  # commits of the base size up to this many buckets
COMMIT_SCALE_MAX = 8
# Files are ordered by the month they declare, peeked in their first bytes (S20 is near the top).
PEEK_BYTES = 4 * 1024
_MONTH_RE = re.compile(rb"\nS20\.G00\.05\.005,'[0-9]{2}([0-9]{2})([0-9]{4})'")
MAX_DEFAULT_WORKERS = 2  # the target machine has 2 cores; Polars' work here is mostly 1 thread
# Polars threads per parse process of a pool: the pool already keeps the CPUs busy, and more
# threads per process only add hand-offs and spinning between processes sharing the CPUs.
POOL_POLARS_THREADS = 1
MIN_IDLE_CPUS_FOR_POOL = 1.0  # default pool only when the load average leaves a CPU idle
XML_SUFFIX = ".xml"
FLAT_SUFFIXES = tuple(x for x in codes.INPUT_SUFFIXES if x != XML_SUFFIX)
XML_MAGIC = b"<"


# glibc malloc: parse batches allocate and free ~150 MB of large NumPy / bytes buffers each;
# by default glibc serves those with fresh mmap()s and trims its heap on free, so every batch
# page-faults them in again (measured: 25 % of the parse CPU in the kernel). Serving them
# from a heap that is not trimmed below this size reuses the pages (RSS stays at its peak).
MALLOC_MMAP_THRESHOLD = 64 * 1024 * 1024
MALLOC_TRIM_THRESHOLD = 512 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def tune_malloc() -> bool:
    """Keep freed large blocks for reuse (glibc only; a no-op elsewhere). Idempotent."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
                    and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


@dataclass
class IngestReport:
    """Counts of one ``ingest_paths`` call (line accounting: read = parsed + quarantined)."""

    files_seen: int = 0
    files_ingested: int = 0
    files_skipped_duplicate: int = 0
    skipped_duplicate_examples: list[str] = field(default_factory=list)  # the first few of them
    files_skipped_other: int = 0  # in a folder, not *.dsn/*.txt/*.edi/*.xml (``discover``)
    skipped_other_examples: list[str] = field(default_factory=list)  # the first few of them
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
    partitions_compacted: int = 0  # lake partitions merged into one part at the end (compact)
    parts_compacted: int = 0  # the parts they held before

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


def discover(paths: Iterable[Path | str]) -> tuple[list[Path], list[Path]]:
    """(input files, other files skipped) under ``paths``, recursive and sorted. In a folder,
    a file is an input by its suffix (``codes.INPUT_SUFFIXES``: the lake folder's neighbours,
    CSV inputs, notes… are not DSN); a file named explicitly is always an input, whatever its
    name (the norm sets no file-name rule: ``_is_xml`` sniffs its content), so a DSN without
    a suffix is never silently ignored."""
    found: list[Path] = []
    skipped: list[Path] = []
    broken: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            found.append(p)
            continue
        files, dead = _walk(p)
        for f in dead:  # a link to nothing named like a DSN is refused; any other, skipped
            (broken if f.suffix.lower() in codes.INPUT_SUFFIXES else skipped).append(f)
        for f in files:
            (found if f.suffix.lower() in codes.INPUT_SUFFIXES else skipped).append(f)
    if broken:
        raise UnreadableInputs([str(b) for b in broken])
    return found, sorted(skipped)


class UnreadableInputs(ValueError):
    """Entries of an input folder that cannot be read (a link to nothing): refused, named,
    rather than ingested without them (the month they hold would be credited as missing)."""

    def __init__(self, entries: list[str]):
        self.errors = [f"{e}: a link to nothing (fix or remove it, then ingest again)"
                       for e in entries]
        super().__init__("; ".join(self.errors))


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files, dangling links) under ``folder``, sorted, following links to folders (an
    inbox often links the month's transfer area; ``Path.rglob`` skipped those files without
    a word), each real folder once (a link back up does not loop)."""
    files: list[Path] = []
    dead: list[Path] = []
    seen: set[str] = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in names:
            f = Path(top) / name
            if f.is_file():
                files.append(f)
            elif f.is_symlink() and not f.exists():
                dead.append(f)
    return sorted(files), sorted(dead)


def commit_limits(n_buckets: int) -> tuple[int, int]:
    """(bytes, files) of input per commit: the base limits, scaled with the bucket count so
    that the parts a commit writes (one per table, month and bucket) do not shrink as the
    buckets multiply (capped: the commit's tables are held in memory until written)."""
    scale = min(COMMIT_SCALE_MAX, max(1, -(-n_buckets // COMMIT_SCALE_BUCKETS)))
    return COMMIT_MAX_BYTES * scale, COMMIT_MAX_FILES * scale


def _months(parsed: ParsedFile) -> set:
    """The declared months (``None``: no month) a parsed batch writes partitions for."""
    out: set = set()
    for df in parsed.tables.values():
        if df.height and "decl_month" in df.columns:
            out.update(df.get_column("decl_month").unique().to_list())
    return out


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
    """N4DS XML when named .xml; a flat suffix (.dsn, .txt, .edi) is flat text unless it opens
    with an XML declaration (an N4DS file named .dsn was quarantined line by line: ingestion
    acceptance pass L7) — a stray '<' alone does not make it XML (it sent a DSN file to the
    XML reader, whose lines were then neither parsed nor quarantined); any other name is
    sniffed."""
    name = src.source_file.lower()
    if name.endswith(XML_SUFFIX):
        return True
    head = src.data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if name.endswith(FLAT_SUFFIXES):
        return head.startswith(b"<?xml")
    return head[:1] == XML_MAGIC


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


def _parse_in_pool(sources: list[SourceBytes], n_buckets: int) -> ParsedFile:
    """``parse_sources`` in a parse process (``tune_malloc`` first: it is idempotent)."""
    tune_malloc()
    return parse_sources(sources, n_buckets)


def _write_commit(bundle: BundleWriter | None, parsed: ParsedFile, root_dir: Path,
                  batch_id: str, n_buckets: int) -> None:
    """One commit, in order: its archive bundle into place, then its parts, ``files`` last."""
    if bundle is not None:
        bundle.publish()
    write_parsed(parsed, root_dir, batch_id, n_buckets)


def new_batch_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _peek_month(path: Path) -> str:
    """``AAAAMM`` of the first S20.G00.05.005 in the file's head ("" when none is found)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(PEEK_BYTES)
    except OSError:
        return ""
    m = _MONTH_RE.search(head)
    return (m.group(2) + m.group(1)).decode("ascii") if m else ""


def order_for_commits(files: list[Path]) -> list[Path]:
    """``files`` stably sorted by the month they declare (peeked in their first bytes).

    A commit writes one Parquet part per (table, month, bucket) it touches; inputs are usually
    grouped by employer (all months of one SIRET together), so in discovery order every commit
    touches every month. Month order makes each commit touch ~3 months: ~4x fewer, larger
    parts. Deterministic (ties keep discovery order), so the lake content is too."""
    keys = [_peek_month(f) for f in files]
    return [f for _, _, f in sorted(zip(keys, range(len(files)), files))]


def _default_workers() -> int:
    """Parse processes when ``workers`` is not given: 2 when at least one CPU is idle (1-minute
    load average), else 1; always 1 inside a daemonic worker (it cannot have children).

    Measured on the shared 2-CPU machine (docs/ingestion.md#performance): the pool only pays
    when CPUs are idle; when other jobs keep them busy its overhead (spawned interpreters,
    pickled batches, more threads) makes one process faster. The choice never changes the lake
    content, only the speed."""
    cpus = os.cpu_count() or 1
    if multiprocessing.current_process().daemon or cpus < 2:
        return 1
    try:
        idle = cpus - os.getloadavg()[0]
    except OSError:  # load average unavailable on this platform
        idle = float(cpus)
    return min(MAX_DEFAULT_WORKERS, cpus) if idle >= MIN_IDLE_CPUS_FOR_POOL else 1


def _read_files(batch: list[Path] | ArchivedBatch) -> list[SourceBytes]:
    """Bytes and sha256 of a parse batch's files, or of a bundle row group's archived inputs
    (run one batch ahead in a thread: file reads, decompression and hashlib release the GIL,
    so this overlaps with the parsing of the previous batch)."""
    if isinstance(batch, ArchivedBatch):
        return read_archived(batch)
    return [SourceBytes.read(f) for f in batch]


def _new_sources(read: list[SourceBytes], known: KnownChecksums,
                 report: IngestReport) -> list[SourceBytes]:
    """The files of a batch whose sha256 is not known yet (in order; duplicates counted)."""
    sources = []
    for src in read:
        if src.sha256 in known:
            report.files_skipped_duplicate += 1
            if len(report.skipped_duplicate_examples) < SKIPPED_EXAMPLES:
                report.skipped_duplicate_examples.append(src.source_file)
            continue
        known.add(src.sha256)
        sources.append(src)
    return sources


class _InlineExecutor:
    """Same interface as a process pool, running the job in the calling process (workers=1)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # re-raised by .result(), as a pool would
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None


def repair_lake(root_dir: Path | str) -> dict[str, int]:
    """Finish or undo what a crashed ingestion left in the lake: a compaction past its commit
    point rolled forward (else undone), then the parts and archive bundles of batches never
    committed deleted. Before anything reads or writes the lake, under the DIR lock: every
    ingestion, and every crediting run (``flows.steps.prepare``), which would otherwise count
    uncommitted rows, or a partition's rows twice."""
    recovered = recover_compactions(root_dir)  # first: a committed merge is rolled forward
    return {"compactions_repaired": recovered, "orphans_removed": remove_orphans(root_dir)}


def ingest_paths(paths: list[Path], root_dir: Path, n_buckets: int = DEFAULT_BUCKETS,
                 on_progress: Callable[[IngestReport], None] | None = None, *,
                 workers: int | None = None, archived: Iterable[ArchivedBatch] = (),
                 keep_archive: bool = True) -> IngestReport:
    """Ingest files/folders of DSN (flat or N4DS XML) into ``root_dir/lake``.

    ``archived``: bundle row groups of another lake's archive to ingest too (a replay), after
    the files; ``keep_archive=False`` writes no archive bundle (a replay's throw-away lake).

    ``workers``: parse processes (default ``None``: 2 when a CPU is idle, else 1, see
    ``_default_workers``); a pool is only started when there is more than one parse batch. Parse batches are
    consumed in submission order and committed by one background writer thread, one commit
    at a time (parts first, ``lake/files`` part last), so the lake content does not depend on
    worker timing. Memory: ``workers + 1`` parse batches in flight, plus the commit being
    written and the one being filled.
    """
    root_dir = Path(root_dir)
    report = IngestReport()
    repair_lake(root_dir)
    known = known_checksums(root_dir)
    files, skipped = discover(paths)
    report.files_skipped_other = len(skipped)
    report.skipped_other_examples = [str(f) for f in skipped[:SKIPPED_EXAMPLES]]
    report.files_seen = len(files)
    batches: list[list[Path] | ArchivedBatch] = [*_batches(order_for_commits(files)), *archived]
    n_workers = _default_workers() if workers is None else max(1, int(workers))
    n_workers = min(n_workers, len(batches)) or 1
    tune_malloc()
    # The pool's initializer runs before the first task imports Polars (it must not import it
    # itself): it sets the parse processes' Polars thread count; ``_parse_in_pool`` tunes malloc.
    parser = (ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=functools.partial(os.putenv, "POLARS_MAX_THREADS",
                                                                str(POOL_POLARS_THREADS)))
              if n_workers > 1 else _InlineExecutor())
    parse = _parse_in_pool if n_workers > 1 else parse_sources
    io_pool = ThreadPoolExecutor(max_workers=1)  # archive bundles and commits, in order
    reader = ThreadPoolExecutor(max_workers=1)  # reads + checksums the next parse batch
    pending: list[ParsedFile] = []
    pending_bytes = pending_files = 0
    max_bytes, max_files = commit_limits(n_buckets)
    # months written (and those of an interrupted compaction): compacted at the end
    touched: set = pending_months(root_dir)
    writing: Future | None = None
    archives: list[Future] = []
    bundle: BundleWriter | None = None  # the archive bundle of the commit being filled
    batch_id = ""
    in_flight: deque[tuple[Future, list[SourceBytes]]] = deque()

    def wait_write() -> None:
        nonlocal writing, archives
        for fut in archives:
            fut.result()  # re-raises a copy error
        archives = []
        if writing is not None:
            writing.result()  # re-raises a write error
            writing = None
            if on_progress is not None:
                on_progress(report)

    def commit() -> None:
        nonlocal pending, pending_bytes, pending_files, writing, bundle
        if not pending:
            return
        parsed = concat_parsed(pending)
        pending, pending_bytes, pending_files = [], 0, 0
        wait_write()  # one commit at a time: commits stay sequential and atomic
        report.batches.append(batch_id)
        report.add(parsed)
        touched.update(_months(parsed))
        writing = io_pool.submit(_write_commit, bundle, parsed, root_dir, batch_id, n_buckets)
        bundle = None

    def collect_oldest() -> None:
        nonlocal pending_bytes, pending_files, bundle, batch_id
        fut, sources = in_flight.popleft()
        pending.append(fut.result())
        if len(pending) == 1:  # the first parse batch of a commit: its id and bundle
            batch_id = new_batch_id()
            bundle = BundleWriter(root_dir, batch_id) if keep_archive else None
        if bundle is not None:
            archives.append(io_pool.submit(bundle.add, sources))
        pending_bytes += sum(len(src.data) for src in sources)
        pending_files += len(sources)
        if pending_bytes >= max_bytes or pending_files >= max_files:
            commit()

    try:
        next_read = reader.submit(_read_files, batches[0]) if batches else None
        for i in range(len(batches)):
            read = next_read.result()
            next_read = reader.submit(_read_files, batches[i + 1]) if i + 1 < len(batches) else None
            sources = _new_sources(read, known, report)  # dedup stays sequential, in file order
            del read
            if not sources:
                continue
            in_flight.append((parser.submit(parse, sources, n_buckets), sources))
            del sources
            while len(in_flight) > n_workers:
                collect_oldest()
        while in_flight:
            collect_oldest()
        commit()
        wait_write()
    finally:
        parser.shutdown(wait=True, cancel_futures=True)
        reader.shutdown(wait=True, cancel_futures=True)
        io_pool.shutdown(wait=True)
        if bundle is not None:  # a failure before this bundle's commit
            bundle.discard()
    if touched:  # several commits (this run's or earlier ones) in one partition: merge them
        merged = compact(root_dir, touched)
        report.partitions_compacted, report.parts_compacted = merged.partitions, merged.parts_before
    return report
