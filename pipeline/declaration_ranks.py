"""The current declaration versions a run reads, numbered: ``_drank`` (version order, also the
order of lineage) for every row of a person table. Computed once per lake state, one month at a
time, and held per bucket (``run_declarations``); ``scan_person_table`` reads a person table
restricted to them, identity links applied."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Iterator, NamedTuple

import polars as pl

from parsers.lake import BUCKET_DIGITS, lake_path, month_dir, scan, scan_parts
from parsers.lake_schema import CHANGE_TABLES, TABLES
from parsers.tables import DECL_ID_SHA_CHARS
from pipeline.identity import Identity, apply_identity_links, identity_links
from pipeline.lake_reads import lake_signature, scan_table
from pipeline.versions import current_declarations as versions_current


class RunDeclarations(NamedTuple):
    """The current declarations a bucket run needs (``run_declarations``)."""

    decls: pl.DataFrame  # decl_id, _drank (= row index): the run's current declarations
    ident: Identity  # identity_links (the whole lake's)
    drank: pl.Expr  # a row's _drank, null when not current (``drank_expr``): built once


_IDENT_CACHE: dict[tuple, Identity] = {}
_DECLS_CACHE: dict[tuple, RunDeclarations] = {}  # one lake state and declaration set at a time
SUBSET_AT_MOST = 0.5  # below this share of the lake's declarations, a run holds only its own


def run_declarations(root_dir: Path | str, buckets: list[int] | None = None) -> RunDeclarations:
    """The current declarations the rows of ``buckets`` refer to (every bucket when None),
    with the lake's identity links and the rank lookup.

    What a process holds follows its buckets, not the lake: the lake's current declarations
    are computed once per lake state and kept on disk (``current_declarations_path``), with
    each bucket's share (``BY_BUCKET``); a bucket run whose buckets (and the buckets its
    identity links bring rows from) refer to less than ``SUBSET_AT_MOST`` of them reads and
    holds only those, their ``_drank`` renumbered 0..k-1 in the same order (every comparison
    is unchanged): its cost follows its own declarations, not the lake's 24 M. Otherwise
    (small lakes, where every bucket meets nearly every declaration) the process holds them
    all, once for all its runs."""
    sig = lake_signature(root_dir, "declarations", "individuals", *CHANGE_TABLES)
    path = current_declarations_path(root_dir)
    ident = lake_identity(root_dir)
    own = None
    if buckets is not None:
        read = run_buckets(ident, buckets)
        own = bucket_declarations(path, read)
        total = scan_current(path).select(pl.len()).collect().item()
        if own.height >= SUBSET_AT_MOST * total:
            own = None
    key = (sig, str(path), None if own is None else tuple(read))
    hit = _DECLS_CACHE.get(key)
    if hit is None:
        decls = (scan_current(path).collect() if own is None else own).sort("_drank")
        decls = decls.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_drank"))
        hit = RunDeclarations(decls, ident, drank_expr(decls))
        _DECLS_CACHE.clear()
        _DECLS_CACHE[key] = hit
    return hit


def lake_identity(root_dir: Path | str) -> Identity:
    """The lake's identity links (``identity_links`` over its current declarations), computed
    once per process and lake state."""
    sig = lake_signature(root_dir, "declarations", "individuals", *CHANGE_TABLES)
    ident = _IDENT_CACHE.get(sig)
    if ident is None:
        path = current_declarations_path(root_dir)
        ident = identity_links(root_dir, scan_current(path).select("decl_id"))
        _IDENT_CACHE.clear()
        _IDENT_CACHE[sig] = ident
    return ident


def run_buckets(ident: Identity, buckets: list[int]) -> list[int]:
    """The buckets a run of ``buckets`` reads: its own and those its identity links bring
    rows from (an old NIR or NTT usually hashes to another bucket)."""
    run = {int(b) for b in buckets}
    links = ident.links.filter(pl.col("link_bucket").is_in(sorted(run)))
    return sorted(run | set(links["src_bucket"].drop_nulls().to_list()))


def drank_expr(decls: pl.DataFrame) -> pl.Expr:
    """``_drank`` of a row's declaration, null when it is not a current one. A cast to the
    Enum of current decl_ids (category i is the declaration of ``_drank`` i) looks each row up
    and adds ONE column, where a join on decl_id would re-gather every column of a big table.
    Built once per run and reused: turning the Enum into an expression copies all its
    categories."""
    return (pl.col("decl_id").cast(pl.Enum(decls["decl_id"]), strict=False).to_physical()
            .cast(pl.Int64).alias("_drank"))


CURRENT_DIR = "_current_declarations"  # under lake/: derived data, one folder per lake state
BY_BUCKET = "by_bucket"  # in a state's folder: bucket=NNN/part-<month>.parquet, each bucket's share
STALE_SECONDS = 3600  # a "."-folder this old is a killed process's, not one computing now


def current_declarations_path(root_dir: Path | str) -> Path:
    """Folder of the lake state's current declarations, ``(decl_id, _drank)``: one Parquet per
    declared month (``part-*.parquet``, ``current_declarations``) and, under ``BY_BUCKET``, the
    ones each bucket's contracts refer to (``bucket_shares``). Computed once per lake state by
    the first process that needs it, one month at a time (memory: one month's declarations
    and the bucket numbers of its contract rows), published by an atomic rename (a concurrent
    process computing the same folder loses the rename and uses the winner's); folders of
    older lake states are removed. Kept under the lake, or under the temp folder when the lake
    is read-only."""
    sig = lake_signature(root_dir, "declarations", "contracts")
    state = hashlib.sha256(repr(sig).encode()).hexdigest()[:16]
    base = lake_path(root_dir) / CURRENT_DIR
    try:
        base.mkdir(parents=True, exist_ok=True)
        writable = os.access(base, os.W_OK)  # a read-only copy may already hold the folder
    except OSError:
        writable = False
    if not writable:
        base = Path(tempfile.gettempdir()) / f"cpf{CURRENT_DIR}"
        base.mkdir(parents=True, exist_ok=True)
    final = base / state
    if not final.exists():
        tmp = base / f".{state}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        for i, (month, part) in enumerate(current_declarations(root_dir)):
            part.write_parquet(tmp / f"part-{i:04d}.parquet")
            for bucket, share in bucket_shares(root_dir, month, part):
                write_share(tmp, i, bucket, share)
        try:
            tmp.rename(final)
        except OSError:  # another process published the same state first
            shutil.rmtree(tmp, ignore_errors=True)
        for old in base.iterdir():  # older states, and what a killed process left
            if old.name != final.name and (not old.name.startswith(".")
                                           or time.time() - old.stat().st_mtime > STALE_SECONDS):
                shutil.rmtree(old, ignore_errors=True)
    return final


def scan_current(path: Path) -> pl.LazyFrame:
    """All current declarations of a state folder (``current_declarations_path``)."""
    return pl.scan_parquet(path / "part-*.parquet", hive_partitioning=False)


SHARE_GROUP_BUCKETS = 16  # bucket folders read together by ``bucket_shares``: bounds memory


def bucket_shares(root_dir: Path | str, month: date | None,
                  part: pl.DataFrame) -> Iterator[tuple[int, pl.DataFrame]]:
    """(bucket, its rows of ``part``): the current declarations of ``month`` (``part``, in
    ``_drank`` order) that some contract row of the bucket refers to. A declaration's rows
    are all in its declared month's partition, so one month's contracts are read, as ranks
    (``drank_expr``) and bucket numbers only, ``SHARE_GROUP_BUCKETS`` bucket folders at a
    time: all 128 folders of a national month at once peaked at 3.0 GB, by 16 at 1.1 GB.

    Why once per lake state rather than in each bucket run: a run finding its declarations
    by semi-joining the lake's whole list (24 M a national year) paid ≈ 3.5 CPU-s per bucket,
    against ≈ 0.8 CPU-s to read its share, after ≈ 20 CPU-s per month here
    (``benchmarks/bench_declarations.py``, synthetic national month)."""
    if month is None or part.height == 0:
        return
    folders = sorted((lake_path(root_dir) / "contracts" / month_dir(month)).glob("bucket=*"))
    rank = drank_expr(part).alias("_i")  # _i: row of part (built once: it copies the Enum)
    for g in range(0, len(folders), SHARE_GROUP_BUCKETS):
        files = sorted(f for d in folders[g:g + SHARE_GROUP_BUCKETS]
                       for f in d.glob("part-*.parquet"))
        if not files:
            continue
        pairs = (scan_parts(files, TABLES["contracts"]).select(rank, "bucket")
                 .drop_nulls().unique().sort("bucket", "_i").collect())
        rows, start = part[pairs["_i"]], 0  # one gather; each bucket is then a slice
        for bucket, n in pairs.group_by("bucket", maintain_order=True).len().iter_rows():
            yield int(bucket), rows.slice(start, n)
            start += n


def share_dir(state: Path, bucket: int) -> Path:
    """Folder of one bucket's share in a state folder (``current_declarations_path``)."""
    return state / BY_BUCKET / f"bucket={bucket:0{BUCKET_DIGITS}d}"


def write_share(state: Path, i: int, bucket: int, share: pl.DataFrame) -> None:
    """One bucket's share of the ``i``-th month (``bucket_shares``) into a state folder; lz4:
    derived data rewritten per lake state, where zstd took 2.5x the CPU (measured)."""
    folder = share_dir(state, bucket)
    folder.mkdir(parents=True, exist_ok=True)
    share.write_parquet(folder / f"part-{i:04d}.parquet", compression="lz4")


def bucket_declarations(path: Path, buckets: list[int]) -> pl.DataFrame:
    """The current declarations (``decl_id``, lake-wide ``_drank``) that the contracts of some
    buckets refer to (``bucket_shares``), each once."""
    files = sorted(f for b in buckets for f in share_dir(path, b).glob("part-*.parquet"))
    if not files:
        return pl.DataFrame(schema={"decl_id": pl.String, "_drank": pl.Int64})
    return (pl.scan_parquet(files, hive_partitioning=False)
            .unique("_drank").collect())


def current_declarations(root_dir: Path | str
                         ) -> Iterator[tuple[date | None, pl.DataFrame]]:
    """(declared month, its current declarations): current declaration versions
    (``pipeline.versions``: nature 01, not test, not rejected, A&R substitution, fractions
    unioned), one declared month at a time (the month is part of the version key), in
    ``_drank`` order: the rank of (decl_month, constitution_date,
    decl_id), nulls first — the order of "the latest declaration of the month" (rows compare
    by ``_drank``, then ``line_no``), and of lineage (first..last declaration). Yields at
    least one frame (empty when the lake has no declaration). Ranked by integer-only sorts
    (``decl_id_order``): a national year holds some 24 million declarations, and sorting their
    ids as strings took most of this step."""
    months = (scan(root_dir, "declarations").select("decl_month").unique().collect()
              ["decl_month"].drop_nulls().sort())
    offset = 0
    if months.len() == 0:
        yield None, pl.DataFrame(schema={"decl_id": pl.String, "_drank": pl.Int64})
    for month in months:
        cur = (versions_current(Path(root_dir), month).select("decl_id", "constitution_date")
               .collect())
        # within a month: by constitution date (null first), then decl_id — two sorts of
        # indices (decl_id's integer keys, then a STABLE sort on the date's days)
        by_id = cur.select(pl.arg_sort_by(decl_id_order(cur["decl_id"])))[:, 0]
        day = (cur["constitution_date"].cast(pl.Int32).cast(pl.Int64).fill_null(-(2**62))
               .gather(by_id))
        order = by_id.gather(day.to_frame().select(pl.arg_sort_by(day.name,
                                                                   maintain_order=True))[:, 0])
        yield month, pl.DataFrame({"decl_id": cur["decl_id"].gather(order),
                                   "_drank": pl.int_range(offset, offset + cur.height,
                                                          dtype=pl.Int64, eager=True)})
        offset += cur.height


# decl_id as written by parsers.tables: the file's sha256 prefix (lowercase hex), "-", the
# declaration's line number in the file
DECL_ID_FORMAT = rf"^[0-9a-f]{{{DECL_ID_SHA_CHARS}}}-[1-9][0-9]{{0,9}}$"
LINE_DIGITS = 10


def decl_id_order(ids: pl.Series) -> list[pl.Expr]:
    """Sort keys ordering decl_ids exactly as strings, as two integers when every id has the
    parsers' format (``DECL_ID_FORMAT``), else the string itself:
    - the hex prefix (fixed width, lowercase: numeric order is string order);
    - the line number compared as TEXT ("18" < "2", "1" < "10" < "100"): its digits
      left-aligned on ``LINE_DIGITS`` places (n · 10^(10 − len)), ties broken by length."""
    if not ids.str.contains(DECL_ID_FORMAT).all():
        return [pl.col("decl_id")]
    d = pl.col("decl_id")
    prefix = d.str.slice(0, DECL_ID_SHA_CHARS).str.to_integer(base=16, dtype=pl.UInt64)
    text = d.str.slice(DECL_ID_SHA_CHARS + 1)
    n_digits = text.str.len_bytes().cast(pl.Int64)
    aligned = text.str.to_integer(dtype=pl.Int64) * pl.lit(10, pl.Int64).pow(LINE_DIGITS - n_digits)
    return [prefix.alias("_id_prefix"), (aligned * 16 + n_digits).alias("_id_line")]


ORD_SHIFT = 1 << 32  # _ord = _drank · 2**32 + line_no (line numbers < 2**32)


def scan_person_table(root_dir, table: str, run: RunDeclarations,
                      buckets: list[int] | None, with_ord: bool = True,
                      links: pl.DataFrame | None = None) -> pl.LazyFrame:
    """A person table restricted to current declarations (and buckets), with their
    ``_drank``. ``_ord`` orders rows as (decl_month, constitution_date, decl_id,
    line_no): the "latest version" order. With ``links`` (``identity_links``), rows of an old
    identity (NTT-only, old NIR) get the current NIR (``apply_identity_links``)."""
    lf = scan_table(root_dir, table, buckets)
    if links is not None and links.height:
        lf = apply_identity_links(root_dir, table, lf, links, buckets)
    lf = lf.with_columns(run.drank).filter(pl.col("_drank").is_not_null())
    if with_ord:
        lf = lf.with_columns((pl.col("_drank") * ORD_SHIFT + pl.col("line_no").fill_null(0))
                             .alias("_ord"))
    return lf
