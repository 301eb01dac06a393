"""Run snapshots, manifest, atomic publication and the published ledger.

Layout under DIR (see docs/design.md)::

    runs/.staging-<run_id>/              a run being written (never read by anyone)
    runs/<run_id>/                       a complete snapshot: annual_credits, balances, entries,
                                         uncreditable, employments, dotation_lots, runs,
                                         dsn_inputs (Parquet), declarations/ and quarantine/
                                         (one Parquet per declared month), manifest.json,
                                         snapshot_sources.json, report/
    ledger/entries/run=<run_id>/part-0.parquet   the run's new entries (append-only journal)
    CURRENT                              JSON pointer: the published runs, in order, with the
                                         sha256 of each entries file

**The ledger is the union of the entries files of the runs listed in CURRENT** (checked against
their sha256). A run is published in three atomic steps — ``os.replace`` of the staged run
directory, ``os.replace`` of its ledger partition, then ``os.replace`` of CURRENT — so a run
killed at any point leaves the published state untouched: its leftovers are not listed in
CURRENT, do not count, and are swept by the next run (which, on the same inputs, derives the same
run id and completes it).

Determinism: the run id is derived from content (year, sequence number, input checksums, parameter
version, code version, run date) and no wall-clock time enters the ledger, the snapshot Parquet
files or the manifest; timings go to ``run_log.json`` only, which replay ignores.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from parsers.lake import data_dir, lake_path, scan, scan_parts, table_parts
from pipeline.ledger import ENTRY_SCHEMA, balances_by_person, conform, typed_entries
from pipeline.run_report import draw_charts, set_aside, write_page, write_report

REPO = Path(__file__).resolve().parents[1]
CURRENT = "CURRENT"
# Columns of the contract's annual_credits view, in order, with their types.
ANNUAL_CREDITS_CONTRACT: dict[str, pl.DataType] = {
    "nir": pl.String(), "year": pl.Int32(), "worked_ratio": pl.Float64(),
    "category": pl.String(), "annual_amount_cents": pl.Int64(), "ceiling_cents": pl.Int64(),
    "balance_before_cents": pl.Int64(), "credit_cents": pl.Int64(),
    "balance_after_cents": pl.Int64(),
}


class PublishError(RuntimeError):
    pass


# --- files, checksums, fsync ---------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            fsync_path(p)
    fsync_path(path)


def write_parquet(df: pl.DataFrame, path: Path) -> str:
    """Deterministic Parquet: one chunk, fixed compression and row groups. Returns sha256."""
    df.rechunk().write_parquet(path, compression="zstd", compression_level=3, statistics=True,
                               row_group_size=1_000_000)
    return sha256_file(path)


def write_json_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def code_version() -> str:
    """Package version + sha256 of the computing code (parsers/, pipeline/, their data).

    ``CPF_CODE_VERSION`` (if set) is taken as is: it pins the version for one run spread over
    several processes / Dask workers while the checkout is being edited (tests/scale)."""
    pinned = os.environ.get("CPF_CODE_VERSION")
    if pinned:
        return pinned
    try:
        from importlib.metadata import version
        pkg = version("cpf-alimentation")
    except Exception:  # pragma: no cover
        pkg = "0"
    h = hashlib.sha256()
    for sub in ("parsers", "pipeline"):
        base = REPO / sub
        for p in sorted(base.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (
                    ".py", ".yaml", ".yml", ".json", ".csv", ".txt", ".toml"):
                h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{pkg}+{h.hexdigest()[:12]}"


@contextlib.contextmanager
def run_lock(root: Path):
    """One run at a time per DIR (concurrency limit 1 even without Prefect); ``DIR/lake``
    given for DIR locks DIR (``parsers.lake.data_dir``)."""
    root = data_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(f"another run holds {root / '.lock'}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- CURRENT and the published ledger --------------------------------------------------------

def read_current(root: Path) -> dict:
    p = Path(root) / CURRENT
    if not p.exists():
        return {"run_id": None, "published": [], "latest_by_year": {}}
    try:
        current = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PublishError(f"{p} is damaged ({e}): restore it from a backup; nothing was "
                           "changed") from None
    if not isinstance(current, dict) or not {"run_id", "published", "latest_by_year"} <= set(current):
        raise PublishError(f"{p} is damaged (not a CURRENT record): restore it from a backup; "
                           "nothing was changed")
    return current


PUBLISHED_MARK = "PUBLISHED"  # in a run folder, once CURRENT lists it


def _run_seq(run_id: str) -> int | None:
    """The sequence number in a run id (``<year>-<seq:04d>-<hex>``), None if not one."""
    parts = run_id.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def run_dir(root: Path, run_id: str) -> Path:
    return Path(root) / "runs" / run_id


def entries_path(root: Path, run_id: str) -> Path:
    return Path(root) / "ledger" / "entries" / f"run={run_id}" / "part-0.parquet"


def verify_ledger(root: Path, current: dict | None = None) -> list[str]:
    """sha256 of every published entries file against CURRENT: detects a tampered entry."""
    current = current or read_current(root)
    errors = []
    for r in current["published"]:
        p = entries_path(root, r["run_id"])
        if not p.exists():
            errors.append(f"run {r['run_id']}: entries file missing ({p})")
        elif sha256_file(p) != r["entries_sha256"]:
            errors.append(f"run {r['run_id']}: entries file {p} does not match its published "
                          f"sha256 (tampered?)")
            copy = run_dir(root, r["run_id"]) / "entries.parquet"
            if copy.exists() and sha256_file(copy) == r["entries_sha256"]:
                try:
                    errors += compare_frames(pl.read_parquet(copy),
                                             conform(pl.read_parquet(p, hive_partitioning=False)),
                                             key=["entry_id"])
                except Exception as exc:  # unreadable file
                    errors.append(f"run {r['run_id']}: entries file unreadable ({exc})")
    return errors


def verify_snapshot(root: Path, record: dict) -> list[str]:
    """A published run's snapshot against its checksums: the manifest against CURRENT's
    ``manifest_sha256``, then every file the manifest lists (balances, runs, declarations,
    quarantine…) against its sha256. A replay recomputes the entries and annual_credits; this
    covers the files it does not recompute."""
    run_id = record["run_id"]
    d = run_dir(root, run_id)
    mpath = d / "manifest.json"
    if not mpath.exists():
        return [f"run {run_id}: manifest missing ({mpath})"]
    errors = []
    want = record.get("manifest_sha256")
    if want and sha256_file(mpath) != want:
        errors.append(f"run {run_id}: manifest.json does not match its sha256 in CURRENT "
                      f"(tampered?)")
    files = json.loads(mpath.read_text()).get("files_sha256", {})
    for name, sha in sorted(files.items()):
        p = d / name
        if not p.exists():
            errors.append(f"run {run_id}: snapshot file {name} missing")
        elif sha256_file(p) != sha:
            errors.append(f"run {run_id}: snapshot file {name} does not match its sha256 in "
                          f"the manifest (tampered?)")
    return errors


def unlisted_runs(root: Path, current: dict) -> list[str]:
    """Published-looking run folders (a manifest, not a staging folder) that CURRENT does not
    list: a run removed from the journal, or a publication that crashed between its folder's
    rename and its commit (``publish_run``; the next run sweeps such a folder)."""
    listed = {r["run_id"] for r in current["published"]}
    runs = Path(root) / "runs"
    if not runs.exists():
        return []
    return sorted(p.name for p in runs.iterdir() if p.is_dir()
                  and not p.name.startswith(".") and p.name not in listed
                  and (p / "manifest.json").exists())


def published_entries(root: Path, current: dict | None = None,
                      upto_run: str | None = None) -> pl.DataFrame:
    """The ledger: entries of the published runs (optionally only those before ``upto_run``)."""
    return conform(scan_published_entries(root, current, upto_run).collect())


def scan_published_entries(root: Path, current: dict | None = None,
                           upto_run: str | None = None) -> pl.LazyFrame:
    """The ledger as a lazy scan (filter it, e.g. to one bucket shard, before collecting)."""
    current = current or read_current(root)
    files = []
    for r in current["published"]:
        if upto_run is not None and r["run_id"] == upto_run:
            break
        files.append(entries_path(root, r["run_id"]))
    if not files:
        return pl.LazyFrame(schema=ENTRY_SCHEMA)
    return scan_parts(files, ENTRY_SCHEMA)


def shard_entries(root: Path, shard: int, shards: int, mine: pl.Expr,
                  current: dict | None = None, upto_run: str | None = None) -> pl.DataFrame:
    """The published entries of ONE shard (``mine``: the shard's row filter on ``nir``), read
    without scanning the rest of the ledger when the layout allows it.

    A sharded run's entries file holds exactly one row group per shard of its ``S'`` shards
    (``entries_shards`` in CURRENT, see ``concat_entries_parts``); shard ``s`` of ``S`` is the
    union of the row groups ``r`` with ``r % S == s`` whenever ``S`` divides ``S'`` (shards are
    unions of lake buckets ``b``, ``b % S' == r`` implies ``b % S == r % S``). Only those row
    groups are read (memory and I/O bounded by the shard). Other runs (unsharded, or a shard
    count that does not divide) are scanned with the filter pushed down. ``mine`` is applied to
    every row in both cases, so the result is the same rows either way, typed as ENTRY_SCHEMA
    but in file order (each run's rows sorted by ``ENTRY_SORT``): the posting only aggregates
    them; ``conform`` sorts them when the order matters."""
    import pyarrow.parquet as pq

    current = current or read_current(root)
    frames: list[pl.LazyFrame] = []
    for r in current["published"]:
        if upto_run is not None and r["run_id"] == upto_run:
            break
        path = entries_path(root, r["run_id"])
        written = int(r.get("entries_shards") or 0)
        pf = pq.ParquetFile(path) if written > 1 and written % shards == 0 else None
        if pf is not None and pf.num_row_groups == written:
            groups = [g for g in range(written) if g % shards == shard]
            lf = pl.from_arrow(pf.read_row_groups(groups)).lazy()
        else:
            lf = scan_parts([path], ENTRY_SCHEMA)
        frames.append(lf.filter(mine))
    if not frames:
        return conform(pl.DataFrame(schema=ENTRY_SCHEMA))
    return pl.concat([typed_entries(f) for f in frames], how="vertical").collect()


def sweep_unpublished(root: Path, current: dict | None = None) -> list[str]:
    """Remove leftovers of runs that never published (call under the run lock). A killed run
    leaves at most one run folder with its manifest, numbered right after the last published
    run and without the ``PUBLISHED`` mark (written once CURRENT lists the run); any other
    such folder was published and is missing from CURRENT (lost, or restored from an older
    copy): nothing is removed and the run fails, or the next run would delete the published
    journal and post it all again."""
    current = current or read_current(root)
    keep = {r["run_id"] for r in current["published"]}
    next_seq = max((r["seq"] for r in current["published"]), default=0) + 1
    runs = Path(root) / "runs"
    lost = [d.parent.name for d in sorted(runs.glob("[!.]*/manifest.json"))
            if d.parent.name not in keep and (_run_seq(d.parent.name) != next_seq
                                              or (d.parent / PUBLISHED_MARK).exists())] \
        if runs.exists() else []
    if lost:
        raise PublishError(
            f"{Path(root) / CURRENT} does not list {len(lost)} published run(s) ({', '.join(lost[:3])}"
            f"{', …' if len(lost) > 3 else ''}): CURRENT was lost or replaced by an older copy. "
            "Nothing was removed; restore CURRENT from a backup (cpf replay checks it)")
    for rid in keep:  # runs published before the mark existed get it now that CURRENT says so
        if (runs / rid).is_dir() and not (runs / rid / PUBLISHED_MARK).exists():
            (runs / rid / PUBLISHED_MARK).touch()
    removed = []
    for tmp in sorted(p for p in Path(root).glob(".*.tmp-*") if p.is_file()):  # a killed run's
        # CURRENT or catalog (a live run holds the lock this is called under)
        tmp.unlink()
        removed.append(str(tmp))
    if runs.exists():
        for d in sorted(runs.iterdir()):
            if d.is_dir() and (d.name.startswith(".") or d.name not in keep):
                shutil.rmtree(d)
                removed.append(str(d))
    ent = Path(root) / "ledger" / "entries"
    if ent.exists():
        for d in sorted(ent.iterdir()):
            rid = d.name.removeprefix(".tmp-").removeprefix("run=")
            if d.name.startswith(".") or rid not in keep:
                shutil.rmtree(d)
                removed.append(str(d))
    return removed


# --- run identity -------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInputs:
    """Everything a run's result depends on (the manifest's ``inputs``)."""

    year: int
    dsn_files: int  # the lake's ingested files (their sorted list: the snapshot's dsn_inputs)
    dsn_digest: str  # sha256 of that list (``lake_inputs_digest``)
    holders_sha256: str | None
    balances_sha256: str | None
    dotations_sha256: str | None
    param_version: str
    code_version: str
    as_of: dt.date

    def to_dict(self) -> dict:
        return {"year": self.year, "dsn_files": self.dsn_files, "dsn_digest": self.dsn_digest,
                "holders_sha256": self.holders_sha256, "balances_sha256": self.balances_sha256,
                "dotations_sha256": self.dotations_sha256, "param_version": self.param_version,
                "code_version": self.code_version, "as_of": self.as_of.isoformat()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunInputs":
        if "dsn_sha256" in d:  # manifests written before the list moved to dsn_inputs
            d = {**d, "dsn_files": len(d["dsn_sha256"]),
                 "dsn_digest": checksums_digest(sorted(d["dsn_sha256"]))}
        return cls(year=int(d["year"]), dsn_files=int(d["dsn_files"]),
                   dsn_digest=d["dsn_digest"],
                   holders_sha256=d["holders_sha256"], balances_sha256=d["balances_sha256"],
                   dotations_sha256=d["dotations_sha256"], param_version=d["param_version"],
                   code_version=d["code_version"], as_of=dt.date.fromisoformat(d["as_of"]))


def derive_run_id(inputs: RunInputs, seq: int) -> str:
    """``<year>-<seq:04d>-<12 hex>``: readable, ordered, and a pure function of the content and
    of the number of runs published before it (so replay can rebuild it exactly)."""
    blob = json.dumps({"seq": seq, **inputs.to_dict()}, sort_keys=True).encode()
    return f"{inputs.year}-{seq:04d}-{hashlib.sha256(blob).hexdigest()[:12]}"


def archive_input(root: Path, path: Path | None) -> str | None:
    """Byte copy of a CSV input under DIR/archive/inputs/<sha256> (for replay)."""
    if path is None:
        return None
    sha = sha256_file(path)
    dst = Path(root) / "archive" / "inputs" / sha
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{sha}.tmp-{os.getpid()}")
        shutil.copyfile(path, tmp)
        fsync_path(tmp)
        os.replace(tmp, dst)
    return sha


def archived_input(root: Path, sha: str | None) -> Path | None:
    return None if sha is None else Path(root) / "archive" / "inputs" / sha


def latest_input(root: Path, key: str) -> tuple[str, Path] | None:
    """(run id, archived file) of the ``key`` input (e.g. ``holders_sha256``) of the latest
    published run that had one, or None. The holders' declarations are a dated register: a
    rerun without ``--holders`` carries it over instead of crediting everyone at the standard
    rate (which reversed every low-qualified credit of a rerun, or of a scheduled campaign)."""
    for run in reversed(read_current(root)["published"]):
        manifest = run_dir(root, run["run_id"]) / "manifest.json"
        if not manifest.exists():
            continue
        sha = json.loads(manifest.read_text()).get("inputs", {}).get(key)
        path = archived_input(root, sha)
        if path is not None and path.exists():
            return run["run_id"], path
    return None


# --- lake access (parsers.lake.scan when present) ------------------------------------------

def scan_lake(root: Path, table: str) -> pl.LazyFrame:
    """One lake table (the parsers' reader: typed, empty frame when the table has no file)."""
    return scan(Path(root), table)


DSN_INPUTS = "dsn_inputs.parquet"  # snapshot file: the run's DSN inputs (sorted sha256)
_DIGEST_CHUNK = 1_000_000


CHECKSUMS_PER_PASS = 4_000_000  # file checksums sorted at a time (~0.5 GB with the sort)


def sorted_file_checksums(root: Path) -> Iterator[pl.DataFrame]:
    """The lake's ingested files as consecutive sorted chunks of one unique ``file_sha256``
    column, in global sorted order. A national year holds ~24 M (1.9 GB of strings; sorting
    them at once peaked at 5.4 GB, measured): the ranges of the first two hex digits are
    sorted one after the other, ~``CHECKSUMS_PER_PASS`` checksums each (one pass up to that
    many). Never a Python list, never in a manifest or a task parameter."""
    lf = scan_lake(root, "files").select("file_sha256").drop_nulls()
    n = lf.select(pl.len()).collect().item()
    k = max(1, min(256, -(-n // CHECKSUMS_PER_PASS)))
    cuts = [f"{256 * i // k:02x}" for i in range(1, k)]  # first range unbounded below, last above
    for lo, hi in zip([None] + cuts, cuts + [None]):
        part = lf
        if lo is not None:
            part = part.filter(pl.col("file_sha256") >= lo)
        if hi is not None:
            part = part.filter(pl.col("file_sha256") < hi)
        chunk = part.unique().sort("file_sha256").collect()
        if chunk.height:
            yield chunk


def lake_file_checksums(root: Path) -> pl.DataFrame:
    """The lake's ingested files as one sorted ``file_sha256`` column (small lakes, tests)."""
    chunks = list(sorted_file_checksums(root))
    return pl.concat(chunks) if chunks else pl.DataFrame(schema={"file_sha256": pl.String})


class _ChecksumsDigest:
    """sha256 of ``"<sha>\n"`` for each sorted checksum, fed chunk by chunk."""

    def __init__(self) -> None:
        self.h, self.n = hashlib.sha256(), 0

    def update(self, col: pl.Series) -> None:
        for i in range(0, col.len(), _DIGEST_CHUNK):
            self.h.update((col.slice(i, _DIGEST_CHUNK).str.join("\n").item() + "\n").encode())
        self.n += col.len()


def checksums_digest(sorted_sha256: pl.DataFrame | list[str]) -> str:
    """sha256 of ``"<sha>\n"`` for each sorted checksum (``lake_inputs_digest``'s digest)."""
    d = _ChecksumsDigest()
    d.update(sorted_sha256.get_column("file_sha256") if isinstance(sorted_sha256, pl.DataFrame)
             else pl.Series("file_sha256", sorted_sha256, dtype=pl.String))
    return d.h.hexdigest()


def lake_inputs_digest(root: Path) -> tuple[int, str]:
    """(files, digest) of the lake's ingested DSN: what a run records in its inputs."""
    d = _ChecksumsDigest()
    for chunk in sorted_file_checksums(root):
        d.update(chunk.get_column("file_sha256"))
    return d.n, d.h.hexdigest()


def write_dsn_inputs(root: Path, inputs: RunInputs, target: Path) -> str:
    """The run's DSN inputs list into the snapshot (for replay), written chunk by chunk
    (``sorted_file_checksums``), checked against the digest recorded at prepare: the DIR
    lock keeps ingestion out during a run, so a mismatch means the lake was changed behind
    it. Returns the file's sha256."""
    import pyarrow.parquet as pq

    d = _ChecksumsDigest()
    schema = pl.DataFrame(schema={"file_sha256": pl.String}).to_arrow().schema
    writer = pq.ParquetWriter(target, schema, compression="zstd", compression_level=3,
                              write_statistics=True)
    try:
        for chunk in sorted_file_checksums(root):
            d.update(chunk.get_column("file_sha256"))
            writer.write_table(chunk.to_arrow().cast(schema), row_group_size=1_000_000)
    finally:
        writer.close()
    if (d.n, d.h.hexdigest()) != (inputs.dsn_files, inputs.dsn_digest):
        raise PublishError(f"the lake's ingested files changed during the run ({d.n} "
                           f"now, {inputs.dsn_files} at prepare): nothing published, rerun")
    return sha256_file(target)


def read_dsn_inputs(root: Path, run_id: str) -> list[str]:
    """The sorted sha256 of the DSN files a published run used (its ``dsn_inputs``)."""
    path = run_dir(root, run_id) / DSN_INPUTS
    return pl.read_parquet(path).get_column("file_sha256").to_list()


# --- snapshot pieces ---------------------------------------------------------------------

def credited_count(ac: pl.DataFrame) -> int:
    """People credited something for the year: cents, or hours in the hour era (2015-2018)."""
    got = pl.col("credit_cents").fill_null(0) > 0
    if "credit_hours" in ac.columns:
        got = got | (pl.col("credit_hours").fill_null(0) > 0)
    return int(ac.filter(got).height)


def hour_totals(ac: pl.DataFrame, entries: pl.DataFrame) -> dict:
    """Hours credited and posted by kind on the hour sub-ledger (hour-era years), {} when none:
    the manifest's ``totals_hours``, so a year credited in hours does not read as 0.00 €."""
    credit = int(ac["credit_hours"].sum() or 0) if "credit_hours" in ac.columns else 0
    by_kind = (entries.filter(pl.col("amount_hours").is_not_null())
               .group_by("kind").agg(pl.col("amount_hours").sum()).sort("kind"))
    if not credit and by_kind.height == 0:
        return {}
    return {"credit": credit,
            "entries_by_kind": {k: int(h) for k, h in zip(by_kind["kind"], by_kind["amount_hours"])}}


def annual_credits_snapshot(credits: pl.DataFrame, year: int, run_id: str) -> pl.DataFrame:
    """Contract columns first (typed as the contract says), explanation columns after. The
    exact ratio's Int128 numerator and denominator are written as DECIMAL(38, 0): Parquet has
    no 128-bit integer, and pyarrow (pandas) could not read the file at all (DuckDB and Polars
    could); a value beyond 38 digits fails the run rather than being rounded."""
    df = credits
    if "year" not in df.columns:
        df = df.with_columns(pl.lit(year).alias("year"))
    contract = [pl.col(c).cast(t) for c, t in ANNUAL_CREDITS_CONTRACT.items()]
    rest = [c for c in df.columns if c not in ANNUAL_CREDITS_CONTRACT and c != "run_id"]
    wide = {c for c, t in df.schema.items() if t == pl.Int128}
    return (df.select(contract + [pl.col(c).cast(pl.Decimal(38, 0)) if c in wide else pl.col(c)
                                  for c in rest])
            .with_columns(pl.lit(run_id).alias("run_id")).sort("nir"))


def quarantine_rows(q: pl.LazyFrame) -> pl.DataFrame:
    """The snapshot form of quarantine rows: the contract's columns first, canonical order."""
    from parsers.lake_schema import QUARANTINE
    first = ["source_file", "line_no", "rubrique", "reason"]
    return (q.select(first + [c for c in QUARANTINE if c not in first])
            .sort(["file_sha256", "line_no", "rubrique", "reason"], nulls_last=True).collect())


def declarations_rows(d: pl.LazyFrame) -> pl.DataFrame:
    """The snapshot form of declarations (employer identity of each decl_id, and whether it
    is the version used: ``versions.version_status``), by decl_id. A month partition holds
    every version of its (SIRET, month, fraction) keys, so it resolves alone."""
    from pipeline.versions import version_status
    d = (d.select("decl_id", "file_sha256", "source_file", "line_no", "siren", "siret",
                  "decl_month", "fraction", "decl_type", "order_no", "constitution_date",
                  "replaced_id", "self_id", "envoi_is_test", "rejected", "reject_reason",
                  "nature")
         .unique("decl_id", keep="first"))
    return (version_status(d).drop("order_no", "constitution_date", "replaced_id", "self_id")
            .sort("decl_id").collect())


# The lake tables a snapshot keeps (not person tables: no shard writes them). They hold the
# lake's whole history — nationally 24 M declarations a year — so the snapshot keeps one file
# per declared month, and a run links the months whose lake partition did not change since
# the previous publication instead of re-sorting and re-encoding them.
LAKE_SNAPSHOTS = {"declarations": declarations_rows, "quarantine": quarantine_rows}
LAKE_SNAPSHOT_FORMAT = 4  # bump when a *_rows function changes: every month is rewritten
SNAPSHOT_SOURCES = "snapshot_sources.json"  # per month file, the lake partition it was made of


def lake_partitions(root: Path, table: str) -> dict[str, list[Path]]:
    """A lake table's part files by month partition directory (``month=YYYY-MM``; parts
    outside one count as ``month=none``), ``month=none`` always present (so a snapshot table
    is never an empty list of files)."""
    from parsers.lake import NO_MONTH
    none = f"month={NO_MONTH}"
    out: dict[str, list[Path]] = {none: []}
    for part in table_parts(lake_path(root), table):
        key = part.parent.name if part.parent.name.startswith("month=") else none
        out.setdefault(key, []).append(part)
    return dict(sorted(out.items()))


def partition_signature(parts: list[Path]) -> str:
    """What a month file was made of: its parts' names and sizes (ingestion only adds parts
    with new names; compaction and orphan removal change the sizes or the names)."""
    return hashlib.sha256(repr((LAKE_SNAPSHOT_FORMAT, [(p.name, p.stat().st_size)
                                                       for p in parts])).encode()).hexdigest()


def write_lake_snapshots(root: Path, st: Path, current: dict) -> dict[str, str]:
    """``<table>/month=…parquet`` of every ``LAKE_SNAPSHOTS`` table into the staging dir
    ``st``; returns their sha256 (for the manifest). A month whose partition signature equals
    the one recorded by the previous publication (``SNAPSHOT_SOURCES``) is hard-linked from
    that run (same bytes: same rows, same canonical order); only changed months are read."""
    from parsers.lake_schema import TABLES
    prev = run_dir(root, current["run_id"]) if current.get("run_id") else None
    prev_src, prev_sha = {}, {}
    if prev is not None and (prev / SNAPSHOT_SOURCES).exists():
        prev_src = json.loads((prev / SNAPSHOT_SOURCES).read_text())
        prev_sha = read_manifest(root, current["run_id"])["files_sha256"]
    shas, sources = {}, {}
    for table, rows in LAKE_SNAPSHOTS.items():
        (st / table).mkdir(parents=True, exist_ok=True)
        for key, parts in lake_partitions(root, table).items():
            rel = f"{table}/{key}.parquet"
            sources[rel] = partition_signature(parts)
            if prev_src.get(rel) == sources[rel] and rel in prev_sha and (prev / rel).exists():
                _link_or_copy(prev / rel, st / rel)
                shas[rel] = prev_sha[rel]
                continue
            lf = scan_parts(parts, TABLES[table]) if parts else pl.LazyFrame(schema=TABLES[table])
            shas[rel] = write_parquet(rows(lf), st / rel)
    (st / SNAPSHOT_SOURCES).write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n")
    return shas


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copyfile(src, dst)


def snapshot_table_files(run: Path, table: str) -> list[Path]:
    """The Parquet files of a snapshot's lake table: its month files, or the single
    ``<table>.parquet`` of runs published before the per-month layout."""
    d = run / table
    return sorted(d.glob("*.parquet")) if d.is_dir() else [run / f"{table}.parquet"]


# --- staging and publication ------------------------------------------------------------------

@dataclass
class Staged:
    run_id: str
    path: Path  # runs/.staging-<run_id>
    manifest: dict


def staging_dir(root: Path, run_id: str) -> Path:
    return Path(root) / "runs" / f".staging-{run_id}"


RUNS_SCHEMA = {"run_id": pl.String, "year": pl.Int32, "seq": pl.Int64, "as_of": pl.String,
               "param_version": pl.String, "code_version": pl.String, "n_entries": pl.Int64,
               "entries_sha256": pl.String}


def run_row(run_id: str, seq: int, inputs: RunInputs, n_entries: int,
            entries_sha256: str) -> dict:
    """One row of the ``runs`` table: what a run was made of and what it posted."""
    return {"run_id": run_id, "year": inputs.year, "seq": seq, "as_of": inputs.as_of.isoformat(),
            "param_version": inputs.param_version, "code_version": inputs.code_version,
            "n_entries": n_entries, "entries_sha256": entries_sha256}


def runs_history(root: Path, current: dict, new: dict) -> pl.DataFrame:
    """The ``runs`` table of a snapshot: every published run, then ``new``. CURRENT keeps only
    what the journal needs (id, year, sequence, checksums); the rest of a run's row (as-of
    date, parameter and code versions, entries posted) is read from its manifest, so every
    run keeps its metadata in every later snapshot, not only the latest."""
    rows = []
    for r in current["published"]:
        m = read_manifest(root, r["run_id"])
        rows.append(run_row(r["run_id"], r["seq"], RunInputs.from_dict(m["inputs"]),
                            int(m["counts"]["entries"]), r["entries_sha256"]))
    return (pl.DataFrame(rows + [new], schema=RUNS_SCHEMA)
            .with_columns(pl.col("as_of").str.to_date()))


def stage_run(root: Path, run_id: str, seq: int, inputs: RunInputs, *,
              new_entries: pl.DataFrame, credits: pl.DataFrame, uncreditable: pl.DataFrame,
              employments: pl.DataFrame, lots: pl.DataFrame, ledger_before: pl.DataFrame,
              notes: dict | None = None, nir_links: pl.DataFrame | None = None,
              report: bool = True) -> Staged:
    """Write a complete snapshot into runs/.staging-<run_id>/ (nothing published yet).
    ``nir_links`` (old_nir, nir): former NIRs, named in the balances (``balances_by_person``)."""
    root = Path(root)
    st = staging_dir(root, run_id)
    st.mkdir(parents=True, exist_ok=True)
    year = inputs.year
    current = read_current(root)
    entries = conform(new_entries)
    ledger_after = conform(pl.concat([ledger_before, entries]))
    ac = annual_credits_snapshot(credits, year, run_id)
    balances = balances_by_person(ledger_after, nir_links).collect()
    shas = {}
    shas["entries.parquet"] = write_parquet(entries, st / "entries.parquet")
    shas["annual_credits.parquet"] = write_parquet(ac, st / "annual_credits.parquet")
    shas["balances.parquet"] = write_parquet(balances, st / "balances.parquet")
    shas["uncreditable.parquet"] = write_parquet(uncreditable, st / "uncreditable.parquet")
    shas.update(write_lake_snapshots(root, st, current))
    shas["employments.parquet"] = write_parquet(employments, st / "employments.parquet")
    shas["dotation_lots.parquet"] = write_parquet(lots, st / "dotation_lots.parquet")
    shas[DSN_INPUTS] = write_dsn_inputs(root, inputs, st / DSN_INPUTS)
    by_kind = (entries.group_by("kind").agg(pl.len().alias("n"), pl.col("amount_cents").sum())
               .sort("kind"))
    runs_df = runs_history(root, current, run_row(run_id, seq, inputs, entries.height,
                                                  shas["entries.parquet"]))
    shas["runs.parquet"] = write_parquet(runs_df, st / "runs.parquet")
    manifest = {
        "run_id": run_id, "seq": seq, "year": year, "inputs": inputs.to_dict(),
        "previous_run_id": current.get("run_id"),
        "counts": {
            "examined": ac.height,
            "credited": credited_count(ac),
            "uncreditable": uncreditable.height,
            "entries": entries.height,
            "entries_by_kind": {k: int(n) for k, n in zip(by_kind["kind"], by_kind["n"])},
            "ledger_entries_after": ledger_after.height,
            "accounts": balances.height,
            "dotation_lots": lots.height,
        },
        "totals_cents": {
            "annual_amount": int(ac["annual_amount_cents"].sum() or 0),
            "credit": int(ac["credit_cents"].sum() or 0),
            "entries": int(entries["amount_cents"].sum() or 0),
            "entries_by_kind": {k: int(a) for k, a in zip(by_kind["kind"], by_kind["amount_cents"])},
            "earned_balance": int(balances["earned_balance_cents"].sum() or 0),
            "dotation_balance": int(balances["dotation_balance_cents"].sum() or 0),
        },
        "files_sha256": shas,
        "notes": notes or {},
    }
    if hours := hour_totals(ac, entries):
        manifest["totals_hours"] = hours
    if report:
        write_report(st / "report", manifest, ac, set_aside(st))
    (st / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    fsync_tree(st)
    return Staged(run_id=run_id, path=st, manifest=manifest)


# --- shard parts: what a post task hands to staging ------------------------------------------

PART_SUFFIX = ".arrow"


def part_path(shard_dir: Path | str, name: str) -> Path:
    """The shard's part of snapshot file ``name`` (e.g. ``entries``)."""
    return Path(shard_dir) / f"{name}{PART_SUFFIX}"


def write_part(df: pl.DataFrame, shard_dir: Path | str, name: str) -> Path:
    """Write one shard's part of a snapshot file as uncompressed Arrow IPC: staging encodes
    every row into the published Parquet anyway, so the part is not encoded twice (nearly a
    memory copy here, memory-mapped there). Same rows in, same snapshot bytes out."""
    path = part_path(shard_dir, name)
    df.rechunk().write_ipc(path, compression="uncompressed")
    return path


def _scan_part(path: Path) -> pl.LazyFrame:
    """A part (Arrow IPC) or a compute output (Parquet), as written."""
    return pl.scan_ipc(path) if path.suffix == PART_SUFFIX else pl.scan_parquet(path)


def _part_schema(path: Path) -> pl.Schema:
    return (pl.Schema(pl.read_ipc_schema(path)) if path.suffix == PART_SUFFIX
            else pl.read_parquet_schema(path))


def concat_parts(parts: list[Path], out: Path, row_group_size: int = 1_000_000) -> str:
    """Stream part files (each already sorted; Arrow IPC parts or Parquet) into ONE Parquet
    file, part after part, with Polars' streaming engine (memory: a few morsels, not the year).
    Types are unified first (an empty part may type a column Null). Returns the sha256; the
    same rows in the same order give the same bytes (checked by tests/scale)."""
    if not parts:
        pl.DataFrame().write_parquet(out)
        return sha256_file(out)
    schemas = [_part_schema(p) for p in parts]
    target = pl.concat([pl.DataFrame(schema=s) for s in schemas], how="vertical_relaxed").schema
    lf = pl.concat([_scan_part(p).cast(dict(target)) for p in parts], how="vertical",
                   rechunk=False)
    lf.sink_parquet(out, compression="zstd", compression_level=3, statistics=True,
                    row_group_size=row_group_size, maintain_order=True)
    return sha256_file(out)


def concat_entries_parts(parts: list[Path], out: Path) -> str:
    """The run's entries file of a sharded run: the shard parts (``write_part``, each
    ENTRY_SCHEMA sorted by ``ENTRY_SORT``) one after the other, EXACTLY one row group per part
    (an empty shard gives an empty row group), so a later run reads one shard's history by row
    group (``shard_entries``). One part in memory at a time. Returns the sha256; the same parts
    give the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = conform(pl.DataFrame(schema=ENTRY_SCHEMA)).to_arrow().schema
    # dictionary encoding only where values repeat (ids and sources are near-unique: plain)
    repeated = ["run_id", "year", "kind", "sub_ledger", "lot_id", "param_version", "code_version"]
    writer = pq.ParquetWriter(out, schema, compression="zstd", compression_level=3,
                              write_statistics=True, use_dictionary=repeated)
    try:
        for p in parts:
            with pa.memory_map(str(p)) as source:  # zero-copy read of the part
                table = pa.ipc.open_file(source).read_all()
                if table.schema.names != schema.names:  # not in canonical form: conform first
                    table = conform(pl.from_arrow(table)).to_arrow()
                table = table.cast(schema)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
    finally:
        writer.close()
    return sha256_file(out)


def _snapshot_jobs(root: Path, st: Path, dirs: list[Path], lots: pl.DataFrame,
                   report: Callable[[], object] | None) -> dict[str, Callable[[], object]]:
    """The snapshot's Parquet files of a sharded run, {file name: job writing it and returning
    its sha256} (``lake tables``: {file name: sha256} of the per-month files), the largest
    first, and the ``report`` job right after the two largest (so it overlaps their encoding).
    The jobs are independent of one another."""
    jobs: dict[str, Callable[[], object]] = {
        "annual_credits.parquet": lambda: concat_parts(
            [part_path(d, "annual_credits") for d in dirs], st / "annual_credits.parquet"),
        "entries.parquet": lambda: concat_entries_parts(
            [part_path(d, "entries") for d in dirs], st / "entries.parquet")}
    if report is not None:
        jobs["report"] = report
    jobs["balances.parquet"] = lambda: concat_parts([part_path(d, "balances") for d in dirs],
                                                    st / "balances.parquet")
    # the crediting engine's own outputs (flows.steps.compute_shard), as it wrote them
    for name in ("uncreditable", "employments"):
        jobs[f"{name}.parquet"] = (lambda n=name: concat_parts(
            [d / f"{n}.parquet" for d in dirs], st / f"{n}.parquet"))
    jobs["lake tables"] = lambda: write_lake_snapshots(root, st, read_current(root))
    jobs["dotation_lots.parquet"] = lambda: write_parquet(lots, st / "dotation_lots.parquet")
    return jobs


def stage_run_sharded(root: Path, run_id: str, seq: int, inputs: RunInputs, *,
                      shard_dirs: list[str], summaries: list[dict], lots: pl.DataFrame,
                      shards: int, lake_buckets: list[int], report: bool = True) -> Staged:
    """``stage_run`` for a sharded run: the snapshot files are the shard parts streamed one
    after the other (rows ordered by shard, then as ``stage_run`` sorts them); counts and
    totals are the sums of the shards' summaries. Never holds more than one shard.

    The files and the report (drawn from the parts' aggregates) are independent, so two
    threads make them at once (Polars and pyarrow encode without the GIL, matplotlib draws
    with it; no file's bytes depend on the scheduling)."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(root)
    st = staging_dir(root, run_id)
    st.mkdir(parents=True, exist_ok=True)
    year = inputs.year
    current = read_current(root)
    dirs = [Path(d) for d in shard_dirs]
    tot = lambda k: sum(int(s[k]) for s in summaries)  # noqa: E731
    kinds = sorted({k for s in summaries for k in s["by_kind_n"]})
    by_kind_n = {k: sum(s["by_kind_n"].get(k, 0) for s in summaries) for k in kinds}
    by_kind_c = {k: sum(s["by_kind_cents"].get(k, 0) for s in summaries) for k in kinds}
    unc = sum(pl.scan_parquet(d / "uncreditable.parquet").select(pl.len()).collect().item()
              for d in dirs)
    manifest = {
        "run_id": run_id, "seq": seq, "year": year, "inputs": inputs.to_dict(),
        "previous_run_id": current.get("run_id"),
        "shards": shards, "lake_buckets": list(lake_buckets),
        "entries_shards": len(dirs),  # row groups of the entries file, one per shard
        "counts": {
            "examined": tot("examined"), "credited": tot("credited"), "uncreditable": unc,
            "entries": tot("entries"), "entries_by_kind": by_kind_n,
            "ledger_entries_after": tot("ledger_entries_after"), "accounts": tot("accounts"),
            "dotation_lots": lots.height,
        },
        "totals_cents": {
            "annual_amount": tot("annual_amount"), "credit": tot("credit"),
            "entries": tot("entries_cents"), "entries_by_kind": by_kind_c,
            "earned_balance": tot("earned_balance"), "dotation_balance": tot("dotation_balance"),
        },
        "notes": {"opening_imported": tot("opening_imported"),
                  "opening_ignored_already_held": tot("opening_ignored")},
    }
    hour_kinds = sorted({k for s in summaries for k in s.get("by_kind_hours", {})})
    if hour_kinds or tot("credit_hours"):
        manifest["totals_hours"] = {
            "credit": tot("credit_hours"),
            "entries_by_kind": {k: sum(s["by_kind_hours"].get(k, 0) for s in summaries)
                                for k in hour_kinds}}

    def draw_report() -> pl.DataFrame:  # from the parts: aggregates do not depend on row order
        ac = pl.concat([_scan_part(part_path(d, "annual_credits"))
                        .select("worked_ratio", "category", "credit_cents") for d in dirs])
        return draw_charts(st / "report", manifest, ac)

    jobs = _snapshot_jobs(root, st, dirs, lots, report=draw_report if report else None)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        done = {name: futures[name].result() for name in sorted(futures)}
    shas = {name: sha for name, sha in done.items() if name not in ("report", "lake tables")}
    if report:  # the page counts the input set aside: read from the lake tables just written
        write_page(st / "report", manifest, done["report"], set_aside(st))
    shas.update(done["lake tables"])
    shas[DSN_INPUTS] = write_dsn_inputs(root, inputs, st / DSN_INPUTS)
    runs_df = runs_history(root, current, run_row(run_id, seq, inputs, tot("entries"),
                                                  shas["entries.parquet"]))
    shas["runs.parquet"] = write_parquet(runs_df, st / "runs.parquet")
    manifest["files_sha256"] = shas
    (st / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    fsync_tree(st)
    return Staged(run_id=run_id, path=st, manifest=manifest)


def _fail_point(name: str) -> None:
    """Test hook: CPF_FAIL_AT=<name> raises at that point (simulates a kill)."""
    if os.environ.get("CPF_FAIL_AT") == name:
        raise PublishError(f"injected failure at {name}")


def publish_run(root: Path, staged: Staged, build_catalog: bool = True) -> Path:
    """Publish atomically: run dir, ledger partition, then CURRENT (the commit point)."""
    root = Path(root)
    run_id = staged.run_id
    current = read_current(root)
    if any(r["run_id"] == run_id for r in current["published"]):
        raise PublishError(f"run {run_id} is already published")
    final = run_dir(root, run_id)
    if Path(staged.path).resolve() != final.resolve():  # else: a retry resuming from it
        if final.exists():  # leftover of a run killed before CURRENT switched: not published
            shutil.rmtree(final)
        os.replace(staged.path, final)
        fsync_path(final.parent)
    _fail_point("after_run_dir")
    part_dir = entries_path(root, run_id).parent
    part_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_part = part_dir.with_name(f".tmp-run={run_id}")
    if tmp_part.exists():
        shutil.rmtree(tmp_part)
    tmp_part.mkdir()
    shutil.copyfile(final / "entries.parquet", tmp_part / "part-0.parquet")
    fsync_tree(tmp_part)
    if part_dir.exists():
        shutil.rmtree(part_dir)
    os.replace(tmp_part, part_dir)
    fsync_path(part_dir.parent)
    if sha256_file(part_dir / "part-0.parquet") != staged.manifest["files_sha256"]["entries.parquet"]:
        raise PublishError("ledger partition does not match the staged entries")
    _fail_point("before_current")
    m = staged.manifest
    latest = dict(current.get("latest_by_year", {}))
    latest[str(m["year"])] = run_id
    new_current = {
        "run_id": run_id, "year": m["year"],
        "latest_by_year": dict(sorted(latest.items())),
        "published": current["published"] + [{
            "run_id": run_id, "year": m["year"], "seq": m["seq"],
            "entries_sha256": m["files_sha256"]["entries.parquet"],
            **({"entries_shards": m["entries_shards"]} if m.get("entries_shards") else {}),
            "manifest_sha256": sha256_file(final / "manifest.json")}],
    }
    write_json_atomic(new_current, root / CURRENT)
    (final / PUBLISHED_MARK).touch()  # after the commit point: see sweep_unpublished
    fsync_path(final)
    _fail_point("after_current")
    if build_catalog:
        from pipeline.catalog import build_catalog
        build_catalog(root)
    return final


def read_manifest(root: Path, run_id: str) -> dict:
    return json.loads((run_dir(root, run_id) / "manifest.json").read_text())


def latest_run_for_year(root: Path, year: int, current: dict | None = None) -> str | None:
    current = current or read_current(root)
    return current.get("latest_by_year", {}).get(str(year))


def previous_lots(root: Path, current: dict | None = None) -> pl.DataFrame:
    from pipeline.dotations import empty_lots
    current = current or read_current(root)
    if not current.get("run_id"):
        return empty_lots()
    p = run_dir(root, current["run_id"]) / "dotation_lots.parquet"
    return pl.read_parquet(p) if p.exists() else empty_lots()


def compare_frames(expected: pl.DataFrame, actual: pl.DataFrame, key: list[str],
                   limit: int = 10) -> list[str]:
    """Row-level differences between two frames (both sorted by ``key``), human readable."""
    diffs: list[str] = []
    if expected.columns != actual.columns:
        diffs.append(f"columns differ: {expected.columns} != {actual.columns}")
        return diffs
    if expected.equals(actual):
        return diffs
    only_exp = expected.join(actual, on=expected.columns, how="anti", nulls_equal=True)
    only_act = actual.join(expected, on=expected.columns, how="anti", nulls_equal=True)
    def show(row: dict) -> str:
        text = ", ".join(f"{k}={v}" for k, v in row.items())
        return text if len(text) <= 400 else text[:400] + "…"

    if only_act.height or only_exp.height:
        diffs.append(f"{only_act.height} row(s) posted but not recomputed, "
                     f"{only_exp.height} recomputed but not posted")
    for row in only_act.head(limit).iter_rows(named=True):
        diffs.append(f"posted but not recomputed: {show(row)}")
    for row in only_exp.head(limit).iter_rows(named=True):
        diffs.append(f"recomputed but not posted: {show(row)}")
    if not diffs:
        diffs.append("same rows, different order or duplicates")
    return diffs
