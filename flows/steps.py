"""The campaign's steps as plain functions (the CLI and the Prefect tasks both call these).

Each step takes and returns paths or small JSON-able dicts, never DataFrames, so a Prefect task
can wrap it as is. Business logic stays in ``pipeline/`` and ``parsers/``; this is glue.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import polars as pl

from parsers import archive
from parsers.account_inputs import read_balances, read_holders
from parsers.archive import ArchivedInputs
from parsers.ingest import ingest_paths, repair_lake
from parsers.lake import LakeDamaged, check_integrity, committed_batches, data_dir, lake_path
from parsers.lake_settings import bucket_count, fix_bucket_count
from pipeline import publish as pub
from pipeline.parameters import params_for_year
from pipeline.declaration_ranks import current_declarations_path, lake_identity
from pipeline.dotations import merge_lots, plan_dotations, read_dotations
from pipeline.ledger import (NIR_LINKS_SCHEMA, RunMeta, conform, ensure,
                             former_nir_balances, plan_year_postings)

# (amounts, uncreditable[, employments]): an engine that knows no employments (a test's
# stand-in) returns two frames and the snapshot's employments table is empty
ComputeFn = Callable[[Path, int, pl.LazyFrame | None], tuple[pl.LazyFrame, ...]]
IngestFn = Callable[[list[Path], Path], dict]


class InputError(ValueError):
    """A bad input row or file (reported with line numbers; the run fails, exit 1)."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:10]) + (f" (+{len(errors) - 10} more)"
                                                    if len(errors) > 10 else ""))
        self.errors = errors


# --- upstream adapters (thin: adapt here when a signature moves) ------------------------------

def ingest_files(paths: list[Path], root: Path, on_progress=None,
                 n_buckets: int | None = None, archived: ArchivedInputs | None = None,
                 note_years: bool = True) -> dict:
    """parsers.ingest.ingest_paths (which also keeps the exact bytes of every ingested file in
    DIR/archive/dsn/ for replay). ``n_buckets``: person buckets of a NEW lake (an existing
    lake keeps its own). ``archived``: another lake's archived inputs to ingest as well (a
    replay: this lake then keeps no archive of its own). Under the DIR lock: a crediting run
    never sees a lake being written or compacted (``parsers.compact``), and two loads never
    interleave."""
    root = data_dir(root)  # DIR/lake given: the archive and the lock are DIR's
    with pub.run_lock(root):
        n = fix_bucket_count(root, n_buckets)
        try:
            report = ingest_paths([Path(p) for p in paths], Path(root), n_buckets=n,
                                  on_progress=on_progress,
                                  archived=archived.batches if archived else (),
                                  keep_archive=archived is None)
        except BaseException:  # e.g. a full disk: free what the failed batch wrote, now
            try:
                repair_lake(root)
            except Exception:  # the next ingestion or run repairs it anyway
                pass
            raise
        out = report.to_dict()
        if note_years:  # not for a campaign, which reruns those years itself
            out["published_years_changed"] = published_years_changed(root)
    return out


def published_years_changed(root: Path) -> dict[str, int]:
    """{year: DSN files} for each published year the lake now holds DSN its latest run did not
    see that may change it (``late_inputs.unseen_files``): what a monthly load must tell the
    operator, since only a rerun credits them (the next campaign does, within
    ``rerun_years_back``). Years older than that get the cheap form (their own months' DSN
    only), as the run notes do."""
    from flows.campaign import operations
    from pipeline.late_inputs import published_years, unseen_files
    if not (Path(root) / pub.CURRENT).exists():
        return {}
    current = pub.read_current(root)
    years = published_years(root, current)
    recent = max(years, default=0) - operations()["rerun_years_back"]
    return {str(y): n for y in years
            if (n := unseen_files(root, y, current, own_months_only=y < recent))}


def default_compute(root: Path, year: int, holders: pl.LazyFrame | None
                    ) -> tuple[pl.LazyFrame, ...]:
    from pipeline.credits import compute_year
    res = compute_year(Path(root), year, holders)
    return res.amounts, res.uncreditable, res.employments


def write_engine_outputs(out_dir: Path, outputs: tuple) -> tuple[dict[str, str], pl.DataFrame]:
    """The engine's frames as ``amounts``, ``uncreditable`` and ``employments`` Parquet files
    in ``out_dir`` (sorted: amounts by nir, uncreditable by every column): their paths, and
    the amounts as written."""
    from pipeline.employments import EMPLOYMENTS_SCHEMA
    amounts, unc, *rest = outputs
    emp = rest[0] if rest and rest[0] is not None else pl.DataFrame(schema=EMPLOYMENTS_SCHEMA)
    frames = {name: f.collect() if isinstance(f, pl.LazyFrame) else f
              for name, f in (("amounts", amounts), ("uncreditable", unc), ("employments", emp))}
    frames["amounts"] = frames["amounts"].sort("nir")
    u = frames["uncreditable"]
    frames["uncreditable"] = u.sort(u.columns, nulls_last=True) if u.width else u
    paths = {}
    for name, df in frames.items():
        paths[name] = str(Path(out_dir) / f"{name}.parquet")
        df.write_parquet(paths[name])
    return paths, frames["amounts"]


def param_version(year: int) -> str:
    """The legal parameters' version for the year (hash of the resolved values)."""
    return params_for_year(year).version


def input_notes(root: Path, holders: Path | str | None, balances: Path | str | None) -> list[str]:
    """What a run must say about the account inputs it was NOT given (the CLI prints these
    lines, the flow logs them as warnings): a deployment's parameters may name neither file,
    and a first campaign without them credits wrongly for good (an account the ledger holds
    no longer takes ``--balances``).

    - no holders file: the register of the latest published run that had one is carried
      over (``publish.latest_input``), or, when no run ever had one, nobody gets the
      low-qualified rate;
    - no balances file on a DIR whose ledger holds no account yet: every account starts
      from a 0 € earned balance."""
    root, notes = Path(root), []
    published = (root / pub.CURRENT).exists()
    if not holders:
        carried = pub.latest_input(root, "holders_sha256") if published else None
        notes.append(f"holders: none given, the file of run {carried[0]} is used "
                     f"(archive/inputs/{carried[1].name[:12]}…); pass --holders to replace it"
                     if carried else
                     "holders: none given and no earlier run had one: nobody is credited at "
                     "the low-qualified rate; pass --holders (deployment: CPF_HOLDERS)")
    if not balances and not published:
        notes.append("balances: none given on a new ledger: every account starts from a "
                     "0.00 € earned balance, for good (--balances is only taken for accounts "
                     "the ledger does not hold yet); pass --balances (deployment: "
                     "CPF_BALANCES) on the first campaign")
    return notes


def check_lake_not_behind(root: Path) -> None:
    """A lake never loses committed files: one that lacks DSN of a commit the archive's log
    records (``archive.read_commits``), or holds fewer files than the last published run used,
    was restored from an older copy (or lost commits), and a run on it would post reversals.
    Refused before anything is removed (``LakeDamaged``); ingesting the missing DSN again
    (the repair keeps every bundle the log lists) or restoring the newest copy lets it through."""
    lake = lake_path(root)
    committed = committed_batches(lake) if lake.exists() else set()  # names a damaged record
    held = pub.scan_lake(root, "files").select("file_sha256")  # read only as far as needed
    problems = []
    gone = (archive.read_commits(root) or set()) - committed
    if gone:
        lost = archive.bundle_checksums(root, gone).to_frame().lazy().unique()
        n = lost.join(held, on="file_sha256", how="anti").select(pl.len()).collect().item()
        if n:
            problems.append(f"{lake} lacks {n} DSN file(s) of {len(gone)} commit(s) its archive "
                            f"records (e.g. batch {min(gone)})")
    current = pub.read_current(root)
    if current["run_id"]:
        used = pub.RunInputs.from_dict(
            pub.read_manifest(root, current["run_id"])["inputs"]).dsn_files
        n_held = held.select(pl.col("file_sha256").n_unique()).collect().item() if committed else 0
        if n_held < used:
            problems.append(f"{lake} holds {n_held} DSN file(s), fewer than the {used} the "
                            f"last published run {current['run_id']} used")
    if problems:
        raise LakeDamaged([p + ": it was restored from an older copy or lost commits; nothing "
                           "was removed. Restore its newest copy, or ingest the missing DSN "
                           "again" for p in problems])


def run_day() -> dt.date:
    """Today in the campaign's timezone (operations.yaml, Europe/Paris): the default run date
    and the bound of a given one — one meaning of "today" (the machine's UTC date and Paris
    differ for an hour or two each night: round-7 pass)."""
    from flows.campaign import operations
    return dt.datetime.now(ZoneInfo(operations()["timezone"])).date()


def year_not_over(year: int, day: dt.date) -> str | None:
    """Why year N cannot be credited on ``day``, or None: a year is credited once it is over,
    in the campaign of N+1 (cpf_rules.md §1); a run dated in N or before would credit a year
    whose DSN are not all declared. Nor can a run be dated after today: its date expires
    dotations (a typo, --as-of 2036-04-20, booked a 1 000 € dotation_expiry years early, and
    no later run gave it back: round-6 operator pass N2)."""
    if day.year <= year:
        return (f"year {year} is not over on {day.isoformat()} (the run date, --as-of): year N "
                f"is credited in the campaign of N+1")
    today = run_day()
    if day > today:
        return (f"the run date {day.isoformat()} (--as-of) is after today ({today.isoformat()}): "
                "a run is dated the day it runs, or before (a replay of an earlier date)")
    return None


def check_dotations(path: Path | None) -> None:
    """--dotations: any bad row fails the run (line numbers)."""
    if path is not None:
        _, errors = read_dotations(Path(path))
        if errors:
            raise InputError(errors)


def check_inputs(holders: Path | None, balances: Path | None, dotations: Path | None) -> None:
    """Every CSV input validated (InputError, line numbers) without running anything: ``cpf
    run`` checks them before ingesting, so a bad row fails in seconds rather than after the
    month's ingestion (``prepare`` validates them again when it archives them)."""
    if holders is not None:
        read_holders_input(holders)
    if balances is not None:
        read_opening_balances(balances)
    check_dotations(dotations)


def read_opening_balances(path: Path) -> pl.DataFrame:
    """--balances as (nir, earned_balance_cents); any bad row fails the run (line numbers)."""
    df, errors = read_balances(Path(path))
    if errors:
        raise InputError([str(e) for e in errors])
    return df.select(pl.col("nir").cast(pl.String), pl.col("earned_balance_cents").cast(pl.Int64))


def read_holders_input(path: Path) -> pl.DataFrame:
    """--holders (low-qualified declarations); any bad row fails the run (line numbers)."""
    df, errors = read_holders(Path(path))
    if errors:
        raise InputError([str(e) for e in errors])
    return df


# --- per-person inputs, split by lake bucket once per run ----------------------------------
#
# --holders and --balances are national files (up to one row per account: 37 M). Every shard
# needs only its people's rows: parsing and validating the whole CSV in each of 128 shards
# took ~190 CPU-s per shard for 37 M balances (measured), i.e. hours. The run validates each
# once and keeps it as Parquet sorted by lake bucket; a shard reads its buckets' row groups,
# an unsharded run (and its replay) reads the whole copy instead of parsing the CSV again.

BUCKETED_INPUTS = {"holders": read_holders_input, "balances": read_opening_balances}
BUCKETED_ROW_GROUP = 65_536  # rows: a national bucket (~290 k accounts) spans a few groups


def bucketed_input_path(prep: "Prepared", name: str) -> Path:
    return Path(prep.work_dir) / "inputs" / f"{name}.parquet"


def write_bucketed_inputs(prep: "Prepared", frames: dict[str, pl.DataFrame | None]) -> None:
    """The validated per-person inputs of the run (``frames``: name -> frame, None when the
    input was not given; missing names are read from the archive), each with its NIR's lake
    ``bucket``, stably sorted by it (NIR order inside a bucket, as the readers return them)."""
    from parsers.lake_schema import person_bucket
    root = Path(prep.root)
    n_lake = bucket_count(root)
    inputs = prep.run_inputs()
    for name, read in BUCKETED_INPUTS.items():
        if name in frames:
            df = frames[name]
        else:
            archived = pub.archived_input(root, getattr(inputs, f"{name}_sha256"))
            df = read(archived) if archived else None
        if df is None:
            continue
        out = bucketed_input_path(prep, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        (df.with_columns(person_bucket(n_lake))
         .sort("bucket", maintain_order=True)
         .write_parquet(out, row_group_size=BUCKETED_ROW_GROUP))


def bucketed_input(prep: "Prepared", name: str, buckets: list[int] | None = None,
                   keep_bucket: bool = False) -> pl.LazyFrame | None:
    """The run's ``name`` input (None when not given), only ``buckets``' rows when given (the
    bucket filter prunes row groups by their statistics); ``keep_bucket``: with its column."""
    path = bucketed_input_path(prep, name)
    if not path.exists():
        return None
    lf = pl.scan_parquet(path)
    if buckets is not None:
        lf = lf.filter(pl.col("bucket").is_in(sorted(int(b) for b in buckets)))
    return lf if keep_bucket else lf.drop("bucket")


# --- the steps ----------------------------------------------------------------------------------

@dataclass
class Prepared:
    root: str
    year: int
    run_id: str
    seq: int
    inputs: dict  # RunInputs.to_dict()
    work_dir: str

    def run_inputs(self) -> pub.RunInputs:
        return pub.RunInputs.from_dict(self.inputs)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "Prepared":
        return cls(**d)


def prepare(root: Path, year: int, holders: Path | None = None, balances: Path | None = None,
            dotations: Path | None = None, as_of: dt.date | None = None) -> Prepared:
    """Validate and archive the CSV inputs, fix the run's identity (sequence + content hash).
    Without ``holders``, the latest published run's holders file is used (``pub.latest_input``);
    an empty file (header only) says "no low-qualified declaration" explicitly.

    Bad rows of --balances / --dotations fail the run here (InputError, line numbers, exit 1),
    before anything is written."""
    root = Path(root)
    if (msg := year_not_over(year, as_of or run_day())) is not None:
        raise InputError([msg])
    if holders is None and (carried := pub.latest_input(root, "holders_sha256")) is not None:
        holders = carried[1]  # the register in force: see ``pub.latest_input``
    frames = {"balances": read_opening_balances(balances) if balances is not None else None,
              "holders": read_holders_input(holders) if holders is not None else None}
    check_dotations(dotations)
    current = pub.read_current(root)
    pub.sweep_unpublished(root, current)
    shutil.rmtree(root / "work", ignore_errors=True)
    check_lake_not_behind(root)
    repair_lake(root)  # a crashed ingestion's uncommitted rows are not the lake's
    check_integrity(root)  # nor does a lost or damaged part mean "no data"
    inputs = pub.RunInputs(
        year=year, **dict(zip(("dsn_files", "dsn_digest"), pub.lake_inputs_digest(root))),
        holders_sha256=pub.archive_input(root, holders),
        balances_sha256=pub.archive_input(root, balances),
        dotations_sha256=pub.archive_input(root, dotations),
        param_version=param_version(year), code_version=pub.code_version(),
        as_of=as_of or run_day())
    seq = len(current["published"]) + 1
    run_id = pub.derive_run_id(inputs, seq)
    work = root / "work" / run_id
    work.mkdir(parents=True, exist_ok=True)
    if (lake_path(root) / "declarations").exists():  # once here, not by every shard worker
        current_declarations_path(root)
    prep = Prepared(root=str(root), year=year, run_id=run_id, seq=seq, inputs=inputs.to_dict(),
                    work_dir=str(work))
    write_bucketed_inputs(prep, frames)
    return prep


def compute(prep: Prepared, compute_fn: ComputeFn | None = None,
            lake_root: Path | None = None) -> dict[str, str]:
    """Run the crediting engine; write its amounts, uncreditable people and employments as
    Parquet."""
    compute_fn = compute_fn or default_compute
    paths, _ = write_engine_outputs(Path(prep.work_dir),
                                    compute_fn(Path(lake_root or prep.root), prep.year,
                                               bucketed_input(prep, "holders")))
    return paths


def load_lots(root: Path, current: dict, inputs: pub.RunInputs,
              ledger_upto: str | None = None) -> pl.DataFrame:
    """The dotation lot register: the previous publication's lots + this run's CSV (if any).

    With ``ledger_upto`` (replay), "previous" is the publication just before that run."""
    if ledger_upto is not None:
        prev_runs = [r["run_id"] for r in current["published"]]
        i = prev_runs.index(ledger_upto)
        prev = pub.previous_lots(root, {"run_id": prev_runs[i - 1] if i else None,
                                        "published": []})
    else:
        prev = pub.previous_lots(root, current)
    dot_path = pub.archived_input(root, inputs.dotations_sha256)
    if not dot_path:
        return prev
    new_lots, errors = read_dotations(dot_path, inputs.dotations_sha256)
    if errors:
        raise InputError(errors)
    return merge_lots(prev, new_lots)


def run_meta(prep: Prepared) -> RunMeta:
    """What every entry of this run carries."""
    inputs = prep.run_inputs()
    return RunMeta(run_id=prep.run_id, code_version=inputs.code_version,
                   param_version=inputs.param_version, default_source=f"run-inputs:{prep.run_id}")


# in the work folder, written by ``prepare_posting`` for every ``post_shard``
FORMER_NIRS, NIR_LINKS = "former_nirs.parquet", "nir_links.parquet"


def nir_links(lake_root: Path) -> pl.DataFrame:
    """(old_nir, nir): the lake's resolved old-NIR links (S21.G00.31.008, current declarations,
    chains followed, conflicts left out: ``identity.identity_links``)."""
    if not (lake_path(lake_root) / "declarations").exists():
        return pl.DataFrame(schema=NIR_LINKS_SCHEMA)
    return lake_identity(lake_root).nir_pairs()


def former_nirs(prep: Prepared, ledger: pl.LazyFrame, links: pl.DataFrame) -> pl.DataFrame:
    """What each examined person's former NIRs hold (``ledger.former_nir_balances``), from the
    published ledger and this run's --balances: their ceiling is the person's, not the NIR's."""
    return former_nir_balances(links, ledger, bucketed_input(prep, "balances"), prep.year,
                               run_meta(prep))


def post(prep: Prepared, computed: dict[str, str], ledger_upto: str | None = None,
         report: bool = True, stage: bool = True, verify: bool = True,
         lake_root: Path | None = None) -> pub.Staged | tuple:
    """Plan the entries (diff against the published ledger), check balances, stage the run."""
    root = Path(prep.root)
    inputs = prep.run_inputs()
    current = pub.read_current(root)
    if verify:
        ensure_published_ledger(root, current)
    ledger = pub.published_entries(root, current, upto_run=ledger_upto)
    meta = run_meta(prep)
    opening = bucketed_input(prep, "balances")  # validated once, by prepare
    amounts = pl.read_parquet(computed["amounts"])
    links = nir_links(Path(lake_root or prep.root))
    posting = plan_year_postings(ledger, amounts, prep.year, meta, opening=opening,
                                 opening_source=f"balances:{inputs.balances_sha256}",
                                 former=former_nirs(prep, ledger.lazy(), links))
    ensure(posting.errors)
    # dotations: the lot register of the previous publication + this run's CSV
    lots = load_lots(root, current, inputs, ledger_upto)
    book = pl.concat([ledger, posting.entries])
    dot_entries = plan_dotations(book, lots, inputs.as_of, meta)
    new_entries = conform(pl.concat([posting.entries, dot_entries]))
    uncreditable = pl.read_parquet(computed["uncreditable"])
    employments = pl.read_parquet(computed["employments"])
    notes = {"opening_imported": posting.opening_imported,
             "opening_ignored_already_held": posting.opening_ignored}
    if not stage:
        return new_entries, posting.credits, uncreditable, lots, ledger, notes
    return pub.stage_run(root, prep.run_id, prep.seq, inputs, new_entries=new_entries,
                         credits=posting.credits, uncreditable=uncreditable,
                         employments=employments, lots=lots, ledger_before=ledger, notes=notes,
                         nir_links=links, report=report)


def publish(prep: Prepared, staged: pub.Staged) -> str:
    out = pub.publish_run(Path(prep.root), staged)
    shutil.rmtree(prep.work_dir, ignore_errors=True)
    return str(out)


@dataclass
class CreditOutcome:
    run_id: str
    run_dir: str
    manifest: dict
    timings: dict = field(default_factory=dict)


class Laps:
    """Wall seconds of a run's consecutive steps (``run_log.json``, not audited): call it with
    a step's name when the step ends."""

    def __init__(self) -> None:
        import time
        self._clock = time.perf_counter
        self.seconds: dict[str, float] = {}
        self._t = self._clock()

    def __call__(self, step: str) -> None:
        now = self._clock()
        self.seconds[step] = now - self._t
        self._t = now


def shard_log(computed: list[dict], posted: list[dict]) -> list[dict]:
    """``run_log.json``'s per-shard figures: each shard's compute summary with its post
    seconds and peak RSS."""
    return [{**c, **{"post_" + k: p[k] for k in ("seconds", "max_rss_mb")}}
            for c, p in zip(computed, posted)]


def credit(root: Path, year: int, holders: Path | None = None, balances: Path | None = None,
           dotations: Path | None = None, as_of: dt.date | None = None,
           compute_fn: ComputeFn | None = None, on_step: Callable[[str], None] | None = None
           ) -> CreditOutcome:
    """compute → post → publish, under the DIR lock. Raises on failure (nothing published)."""
    root = Path(root)
    say = on_step or (lambda s: None)
    with pub.run_lock(root):
        lap = Laps()
        say("preparing the run")
        prep = prepare(root, year, holders, balances, dotations, as_of)
        lap("prepare")
        say(f"computing year {year}")
        computed = compute(prep, compute_fn)
        lap("compute")
        say("posting to the ledger and writing the snapshot")
        staged = post(prep, computed)
        lap("post")
        say("publishing")
        out = publish(prep, staged)
        lap("publish")
    pub.write_json_atomic({"timings_s": lap.seconds}, Path(out) / "run_log.json")
    return CreditOutcome(run_id=prep.run_id, run_dir=out, manifest=staged.manifest,
                         timings=lap.seconds)


# --- replay --------------------------------------------------------------------------------

@dataclass
class ReplayResult:
    ok: bool
    run_id: str | None
    differences: list[str]
    notes: list[str] = field(default_factory=list)


def replay(root: Path, year: int, compute_fn: ComputeFn | None = None,
           ingest_fn: IngestFn | None = None) -> ReplayResult:
    """Recompute year N's latest published run from the archived inputs and compare.

    Checks: every published entries file against its sha256 in CURRENT (a tampered entry fails
    here); the archived DSN re-ingested into a temporary lake give the same file checksums; the
    recomputed entries equal the posted ones row for row and byte for byte (sha256 of the
    canonical Parquet); the recomputed annual_credits snapshot equals the published one.
    """
    root = Path(root)
    current = pub.read_current(root)
    run_id = pub.latest_run_for_year(root, year, current)
    if run_id is None:
        return ReplayResult(False, None, [f"no published run for year {year} in {root}"])
    diffs = list(pub.verify_ledger(root, current))
    diffs += [f"run {r} is on disk with its manifest but not listed in CURRENT (removed from "
              f"the journal, or a publication that crashed before its commit)"
              for r in pub.unlisted_runs(root, current)]
    chain = [r["run_id"] for r in current["published"]]  # each manifest names the run before it
    for before, rid in zip([None, *chain], chain):
        m_path = pub.run_dir(root, rid) / "manifest.json"
        prev = pub.read_manifest(root, rid).get("previous_run_id") if m_path.exists() else before
        if prev != before:
            diffs.append(f"run {rid} was published after {prev}, which CURRENT does not list "
                         f"before it ({before}): a run was removed from the journal")
    notes = []
    if diffs:  # the posted ledger is not what was published: no need to recompute
        return ReplayResult(False, run_id, diffs, notes)
    record = next(r for r in current["published"] if r["run_id"] == run_id)
    diffs += pub.verify_snapshot(root, record)
    manifest = pub.read_manifest(root, run_id)
    inputs = pub.RunInputs.from_dict(manifest["inputs"])
    if pub.derive_run_id(inputs, manifest["seq"]) != run_id:
        diffs.append(f"run id {run_id} does not derive from its manifest's inputs")
    cv = pub.code_version()
    if cv != inputs.code_version:
        notes.append(f"code version now {cv}, run recorded {inputs.code_version}")
    pv = param_version(year)
    if pv != inputs.param_version:
        diffs.append(f"parameter version now {pv}, run recorded {inputs.param_version}")
    for key in ("holders_sha256", "balances_sha256", "dotations_sha256"):  # archive/inputs/<sha>
        sha = manifest["inputs"].get(key)
        path = pub.archived_input(root, sha)
        if path is not None and path.exists() and pub.sha256_file(path) != sha:
            diffs.append(f"archived input {path} ({key.removesuffix('_sha256')}) does not match "
                         "its sha256: changed since the run")
    with tempfile.TemporaryDirectory(prefix="cpf-replay-") as tmp:
        tmp = Path(tmp)
        try:
            used = pub.read_dsn_inputs(root, run_id)
        except FileNotFoundError:  # a run published before dsn_inputs existed
            used = list(manifest["inputs"].get("dsn_sha256", []))
        if (len(used), pub.checksums_digest(used)) != (inputs.dsn_files, inputs.dsn_digest):
            diffs.append("the run's dsn_inputs list does not match its recorded digest")
            return ReplayResult(False, run_id, diffs, notes)
        archived = locate_archived(root, used)
        if archived.missing:
            first = archived.missing[0]
            name = (pub.scan_lake(root, "files").filter(pl.col("file_sha256") == first)
                    .select("source_file").head(1).collect()["source_file"])
            diffs.append(f"{len(archived.missing)} archived DSN file(s) missing, e.g. "
                         + (f"{name[0]} (sha256 {first})" if name.len() and name[0] else first))
            return ReplayResult(False, run_id, diffs, notes)
        if len(archived):
            n_lake = bucket_count(root)
            named = _named_archive(root, archived.files, tmp / "inputs")
            if ingest_fn is None:
                ingest_files(named, tmp, n_buckets=n_lake, archived=archived)
            else:
                ingest_fn(named, tmp)
        got = pub.lake_inputs_digest(tmp)
        if len(archived) and got != (inputs.dsn_files, inputs.dsn_digest):
            diffs.append(f"re-ingested lake holds {got[0]} file(s) (digest {got[1][:12]}…), "
                         f"run used {inputs.dsn_files} ({inputs.dsn_digest[:12]}…)")
        prep = Prepared(root=str(root), year=year, run_id=run_id, seq=manifest["seq"],
                        inputs=manifest["inputs"], work_dir=str(tmp / "work"))
        Path(prep.work_dir).mkdir()
        write_bucketed_inputs(prep, {})  # from the archived inputs, as the run's prepare did
        if manifest.get("shards"):  # a sharded run: recompute it shard by shard, same layout
            try:
                sha, entries, ac = replay_sharded(prep, manifest, tmp)
            except Exception as exc:
                diffs.append(f"recomputation failed: {exc}")
                return ReplayResult(False, run_id, diffs, notes)
            diffs += _differences(root, run_id, manifest, entries, sha, ac, tmp)
            return ReplayResult(not diffs, run_id, diffs, notes)
        computed = compute(prep, compute_fn, lake_root=tmp)
        try:
            entries, credits, *_ = post(prep, computed, ledger_upto=run_id, stage=False,
                                      verify=False, lake_root=tmp)
        except Exception as exc:  # a failing balance check is a difference too
            diffs.append(f"recomputation failed: {exc}")
            return ReplayResult(False, run_id, diffs, notes)
        sha = pub.write_parquet(entries, tmp / "entries.parquet")
        ac = pub.annual_credits_snapshot(credits, year, run_id)
        diffs += _differences(root, run_id, manifest, entries, sha, ac, tmp)
    return ReplayResult(not diffs, run_id, diffs, notes)


def _differences(root: Path, run_id: str, manifest: dict, entries: pl.DataFrame,
                 entries_sha: str, annual_credits: pl.DataFrame, lake_root: Path) -> list[str]:
    """What a replay found different from the published run: entry rows, the entries file's
    sha256, the annual_credits snapshot and the balances (recomputed from the ledger up to and
    including the recomputed entries)."""
    from pipeline.ledger import balances_by_person
    posted = pl.read_parquet(pub.entries_path(root, run_id), hive_partitioning=False)
    diffs = pub.compare_frames(conform(entries), conform(posted), key=["entry_id"])
    posted_sha = manifest["files_sha256"]["entries.parquet"]
    if entries_sha != posted_sha:
        diffs.append(f"recomputed entries sha256 {entries_sha[:16]}… != posted {posted_sha[:16]}…")
    published_ac = pl.read_parquet(pub.run_dir(root, run_id) / "annual_credits.parquet")
    ac_diffs = pub.compare_frames(annual_credits, published_ac, key=["nir"], limit=5)
    if ac_diffs:
        diffs.append(f"annual_credits snapshot differs ({len(ac_diffs)} shown below)")
        diffs += ["annual_credits: " + d for d in ac_diffs]
    before = pub.published_entries(root, upto_run=run_id)
    balances = balances_by_person(pl.concat([before, conform(entries)]),
                                  nir_links(lake_root)).collect()
    published = pl.read_parquet(pub.run_dir(root, run_id) / "balances.parquet").sort("nir")
    bal_diffs = pub.compare_frames(balances, published, key=["nir"], limit=5)
    if bal_diffs:
        diffs.append(f"balances snapshot differs from the ledger's sums ({len(bal_diffs)} "
                     f"shown below)")
        diffs += ["balances: " + d for d in bal_diffs]
    return diffs


def locate_archived(root: Path, shas: list[str]) -> ArchivedInputs:
    """Where the archived copies of ``shas`` are (the lake's commit log names each file's
    archive bundle)."""
    commits = (pub.scan_lake(root, "files").group_by("file_sha256")
               .agg(pl.col("batch_id").min()))
    wanted = (pl.LazyFrame({"file_sha256": shas}, schema={"file_sha256": pl.String})
              .join(commits, on="file_sha256", how="left").collect())
    return archive.locate(root, wanted)


def _named_archive(root: Path, archived: list[Path], out: Path) -> list[Path]:
    """Legacy per-file archived inputs are named by sha256; the parser recognises files by
    their suffix, so expose each under ``<sha256><original suffix>`` (symlinks, no copy)."""
    if not archived:
        return []
    files = pub.scan_lake(root, "files").select("file_sha256", "source_file").collect()
    suffix = {sha: (Path(src).suffix or ".dsn") for sha, src in files.iter_rows() if src}
    out.mkdir(parents=True, exist_ok=True)
    named = []
    for p in archived:
        link = out / f"{p.name}{suffix.get(p.name, '.dsn')}"
        link.symlink_to(p.resolve())
        named.append(link)
    return named


# --- sharded crediting (bounded memory: one bucket shard at a time per worker) ----------------
#
# A person's rows all carry the same lake bucket (person_bucket(N) of the NIR, N = the lake's
# bucket count), so shard s = the lake buckets b with b % S == s holds every row of its people.
# compute_shard reads only those buckets' files; post_shard reads only that shard's ledger
# entries, opening balances and dotation lots; finalize_sharded streams the shard parts into the
# snapshot and the run's ledger file (one row group per shard) without holding the year.

def shard_expr(shards: int, n_lake_buckets: int, nir: str = "nir") -> "pl.Expr":
    """The shard of a person: their lake bucket (the lake's own bucket count) mod shards."""
    from parsers.lake_schema import person_bucket
    return person_bucket(n_lake_buckets, nir) % shards



def shard_buckets(lake_buckets: list[int], shards: int, shard: int) -> list[int]:
    return [b for b in lake_buckets if b % shards == shard]


def shard_dir(prep: Prepared, shard: int) -> Path:
    d = Path(prep.work_dir) / f"shard={shard:03d}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_compute_shard(root: Path, year: int, holders: pl.LazyFrame | None,
                          buckets: list[int]) -> tuple[pl.LazyFrame, ...]:
    from pipeline.credits import compute_year
    res = compute_year(Path(root), year, holders, buckets=buckets)
    return res.amounts, res.uncreditable, res.employments


def compute_shard(prep: Prepared, shard: int, shards: int, lake_buckets: list[int],
                  lake_root: str | None = None) -> dict:
    """Crediting engine on one shard's buckets; writes shard=NNN/{amounts,uncreditable,
    employments}."""
    import time
    t0 = time.perf_counter()
    buckets = shard_buckets(lake_buckets, shards, shard)
    # every bucket's rows: a row filed under a former NIR may sit in another bucket than its
    # person (the engine keeps the shard's buckets and every former NIR the lake links)
    holders = bucketed_input(prep, "holders", keep_bucket=True)
    d = shard_dir(prep, shard)
    _, a = write_engine_outputs(d, default_compute_shard(Path(lake_root or prep.root),
                                                         prep.year, holders, buckets))
    if shards > 1 and a.height:
        n_lake = bucket_count(lake_root or prep.root)
        stray = a.filter(shard_expr(shards, n_lake) != shard).height
        if stray:
            raise RuntimeError(f"shard {shard}: {stray} person(s) outside the shard — the lake "
                               f"was not written with its recorded bucket count ({n_lake})")
    return {"shard": shard, "dir": str(d), "buckets": buckets, "people": a.height,
            "seconds": time.perf_counter() - t0, "max_rss_mb": _max_rss_mb(),
            "polars_threads": pl.thread_pool_size()}


def _max_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_published_ledger(root: Path, current: dict) -> None:
    """Refuse to post on a ledger whose entries files do not match CURRENT's sha256 (a
    tampered or damaged journal): every diff would be computed against wrong history."""
    problems = pub.verify_ledger(root, current)
    if problems:
        raise InputError(["the published ledger does not match CURRENT: " + p for p in problems])


def prepare_posting(prep: Prepared, ledger_upto: str | None = None,
                    lake_root: Path | None = None) -> str:
    """What every shard's posting needs from outside its shard, computed once before the
    shards post: the dotation lot register of this run (previous publication + this run's
    CSV; its path is returned) and the former NIRs' balances (``former_nirs``, written to
    ``FORMER_NIRS``: a former NIR may hash to another shard than its person). It first checks
    the published ledger (as ``post`` does for an unsharded run); a replay (``ledger_upto``)
    has checked it already."""
    root = Path(prep.root)
    current = pub.read_current(root)
    if ledger_upto is None:
        ensure_published_ledger(root, current)
    inputs = prep.run_inputs()
    lots = load_lots(root, current, inputs, ledger_upto)
    out = Path(prep.work_dir) / "lots.parquet"
    lots.write_parquet(out)
    ledger = pub.scan_published_entries(root, current, upto_run=ledger_upto)
    links = nir_links(Path(lake_root or prep.root))
    links.write_parquet(Path(prep.work_dir) / NIR_LINKS)
    former_nirs(prep, ledger, links).write_parquet(Path(prep.work_dir) / FORMER_NIRS)
    return str(out)


def post_shard(prep: Prepared, shard: int, shards: int, lots_path: str,
               ledger_upto: str | None = None) -> dict:
    """Diff-post one shard: its ledger entries, opening balances and lots only. Writes the
    shard's entries, annual_credits and balances parts (``pub.write_part``:
    staging encodes them once into the snapshot); returns counts, totals
    and the balance-check errors (raised by the caller, so exceptions never cross processes).

    The shard's history is read by row group (``pub.shard_entries``): memory and I/O are
    bounded by the shard, not the ledger."""
    import time
    from pipeline.ledger import balances_by_person
    from pipeline.dotations import plan_dotations
    t0 = time.perf_counter()
    root = Path(prep.root)
    inputs = prep.run_inputs()
    current = pub.read_current(root)
    n_lake = bucket_count(root)
    mine = shard_expr(shards, n_lake) == shard
    ledger = pub.shard_entries(root, shard, shards, mine, current, upto_run=ledger_upto)
    meta = run_meta(prep)
    opening = bucketed_input(prep, "balances", shard_buckets(list(range(n_lake)), shards, shard))
    d = shard_dir(prep, shard)
    amounts = pl.read_parquet(d / "amounts.parquet")
    former = pl.read_parquet(Path(prep.work_dir) / FORMER_NIRS).filter(mine)
    posting = plan_year_postings(ledger, amounts, prep.year, meta, opening=opening,
                                 opening_source=f"balances:{inputs.balances_sha256}",
                                 former=former)
    lots = pl.read_parquet(lots_path)
    lots = lots.filter(mine) if lots.height else lots
    dot = plan_dotations(pl.concat([ledger, posting.entries]), lots, inputs.as_of, meta)
    entries = conform(pl.concat([posting.entries, dot])) if dot.height else posting.entries
    ac = pub.annual_credits_snapshot(posting.credits, prep.year, prep.run_id)
    links = pl.read_parquet(Path(prep.work_dir) / NIR_LINKS)
    balances = balances_by_person(pl.concat([ledger, entries]), links).collect()
    pub.write_part(entries, d, "entries")
    pub.write_part(ac, d, "annual_credits")
    pub.write_part(balances, d, "balances")
    by_kind = entries.group_by("kind").agg(pl.len().alias("n"), pl.col("amount_cents").sum())
    hours = pub.hour_totals(ac, entries)
    return {
        "shard": shard, "dir": str(d), "errors": posting.errors,
        "examined": ac.height, "credited": pub.credited_count(ac),
        "entries": entries.height, "ledger_entries_after": ledger.height + entries.height,
        "accounts": balances.height,
        "by_kind_n": {k: int(n) for k, n in zip(by_kind["kind"], by_kind["n"])},
        "by_kind_cents": {k: int(a) for k, a in zip(by_kind["kind"], by_kind["amount_cents"])},
        "annual_amount": int(ac["annual_amount_cents"].sum() or 0),
        "credit": int(ac["credit_cents"].sum() or 0),
        "entries_cents": int(entries["amount_cents"].sum() or 0),
        "earned_balance": int(balances["earned_balance_cents"].sum() or 0),
        "dotation_balance": int(balances["dotation_balance_cents"].sum() or 0),
        "opening_imported": posting.opening_imported, "opening_ignored": posting.opening_ignored,
        "credit_hours": hours.get("credit", 0), "by_kind_hours": hours.get("entries_by_kind", {}),
        "seconds": time.perf_counter() - t0, "max_rss_mb": _max_rss_mb(),
    }


def _lake_bucket_ids(root: Path) -> list[int]:
    from flows.runners import lake_buckets
    return sorted(lake_buckets(root))


def finalize_sharded(prep: Prepared, posted: list[dict], lots_path: str, shards: int,
                     report: bool = True) -> pub.Staged:
    """Check every shard's balance assertions, then stage the run from the shard parts."""
    errors = [f"shard {p['shard']}: {e}" for p in sorted(posted, key=lambda p: p["shard"])
              for e in p["errors"]]
    ensure(errors)
    return pub.stage_run_sharded(Path(prep.root), prep.run_id, prep.seq, prep.run_inputs(),
                                 shard_dirs=[p["dir"] for p in sorted(posted, key=lambda p: p["shard"])],
                                 summaries=posted, lots=pl.read_parquet(lots_path), shards=shards,
                                 lake_buckets=_lake_bucket_ids(Path(prep.root)), report=report)


def credit_sharded(root: Path, year: int, shards: int, holders: Path | None = None,
                   balances: Path | None = None, dotations: Path | None = None,
                   as_of: dt.date | None = None,
                   on_step: Callable[[str], None] | None = None) -> CreditOutcome:
    """The sharded run as plain sequential functions (no Prefect): same bytes as the flow.
    ``on_step`` hears each step and shard as it starts (the CLI's status line)."""
    root = Path(root)
    say = on_step or (lambda s: None)
    with pub.run_lock(root):
        lap = Laps()
        say("preparing")
        prep = prepare(root, year, holders, balances, dotations, as_of)
        ids = _lake_bucket_ids(root)
        lap("prepare")
        computed = []
        for s in range(shards):
            say(f"computing shard {s + 1}/{shards}")
            computed.append(compute_shard(prep, s, shards, ids))
        lap("compute")
        say("preparing the posting")
        lots = prepare_posting(prep)
        posted = []
        for s in range(shards):
            say(f"posting shard {s + 1}/{shards}")
            posted.append(post_shard(prep, s, shards, lots))
        say("staging the snapshot")
        staged = finalize_sharded(prep, posted, lots, shards)
        lap("post")
        say("publishing")
        out = publish(prep, staged)
        lap("publish")
    # per shard as the flow writes it (one process here: max_rss_mb is the peak so far)
    pub.write_json_atomic({"timings_s": lap.seconds, "shards": shard_log(computed, posted)},
                          Path(out) / "run_log.json")
    return CreditOutcome(run_id=prep.run_id, run_dir=out, manifest=staged.manifest,
                         timings=lap.seconds)


def replay_sharded(prep: Prepared, manifest: dict, lake_root: Path) -> tuple[str, pl.DataFrame,
                                                                              pl.DataFrame]:
    """Recompute a sharded run into a temporary staging dir; (entries sha256, entries, ac)."""
    shards = int(manifest["shards"])
    ids = manifest.get("lake_buckets") or _lake_bucket_ids(lake_root)
    for s in range(shards):
        compute_shard(prep, s, shards, ids, lake_root=str(lake_root))
    lots = prepare_posting(prep, ledger_upto=prep.run_id, lake_root=lake_root)
    posted = [post_shard(prep, s, shards, lots, ledger_upto=prep.run_id)
              for s in range(shards)]
    errors = [e for p in posted for e in p["errors"]]
    ensure(errors)
    out = Path(prep.work_dir) / "replay"
    out.mkdir(parents=True, exist_ok=True)
    dirs = [p["dir"] for p in sorted(posted, key=lambda p: p["shard"])]
    sha = pub.concat_entries_parts([pub.part_path(d, "entries") for d in dirs],
                                   out / "entries.parquet")
    pub.concat_parts([pub.part_path(d, "annual_credits") for d in dirs],
                     out / "annual_credits.parquet")
    return (sha, pl.read_parquet(out / "entries.parquet"),
            pl.read_parquet(out / "annual_credits.parquet"))
