"""Vectorised generator of a typed LAKE (no DSN text) for crediting benchmarks.

Why: ingesting the ~35 GB of DSN text of one million people takes far longer than a
benchmark run; the crediting stage only reads the lake. This module draws people, contracts,
pay, activities and absences with NumPy arrays and builds every table with Polars
expressions (no per-row Python), then writes exactly the layout and schemas of
``parsers/lake.py`` / ``parsers/lake_schema.py``:

    ROOT/lake/<person table>/month=YYYY-MM/bucket=NNN/part-gen.parquet
    ROOT/lake/{declarations,employers}/month=YYYY-MM/part-gen.parquet
    ROOT/lake/files/part-gen.parquet      (written last: it commits batch "gen")

Semantics follow the DSN: the contract block is repeated in every monthly declaration
(one ``contracts`` row per person-month), pay is one 51 type 001 and one type 002 row per
person-month with an Activité type 01 row (hundredths) under the 002, absences (60, 65) are
repeated in each month they span, ends (62) appear in the month of the end. All declarations
are nature 01, type 01, fraction 11, not test, not rejected.

CLI: ``python -m generator.lake --root DIR --people 1000000 --year 2025 --seed 1 --buckets 16``
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from generator.year import luhn_complete

from parsers.lake_schema import TABLES, person_bucket

BATCH = "gen"
FULL_H = 15167
FORFAIT_H = 1817
PEOPLE_PER_EMPLOYER = 100


def employers_frame(n: int, seed: int) -> pl.DataFrame:
    """Employer ids with Luhn-valid SIREN/SIRET and an IDCC (n is small: Python is fine)."""
    rng = np.random.default_rng([seed, 7])
    base = rng.integers(10_000_000, 99_999_999, size=n)
    sirens, nics = [], []
    seen = set()
    for i, b in enumerate(base):
        b = int(b)
        while f"{b:08d}" in seen:
            b = (b + 1) % 100_000_000
        seen.add(f"{b:08d}")
        siren = luhn_complete(f"{b:08d}")
        sirens.append(siren)
        nics.append(luhn_complete(siren + f"{1 + i % 9000:04d}")[9:])
    idcc = np.array(["1486", "3248", "0843", "2216", "1979", "0016", "2264", "1517"])
    return pl.DataFrame({
        "employer": np.arange(n, dtype=np.int64),
        "siren": sirens,
        "nic": nics,
        "idcc": idcc[rng.integers(0, len(idcc), size=n)],
    }).with_columns(siret=pl.col("siren") + pl.col("nic"))


def people_frame(n: int, n_employers: int, year: int, seed: int) -> pl.DataFrame:
    """One row per person *and contract*: identity, employer, contract terms, one absence.

    3 % of people hold a second, part-time contract at another employer.
    """
    rng = np.random.default_rng([seed, 1])
    pid = np.arange(n, dtype=np.int64)
    sex = 1 + (rng.random(n) < 0.48).astype(np.int64)
    birth = (np.datetime64(f"{year - 64}-01-01")
             + rng.integers(0, 46 * 365, size=n).astype("timedelta64[D]"))
    employer = np.minimum(n_employers - 1,
                          (n_employers * rng.random(n) ** 1.3).astype(np.int64))
    multi = rng.random(n) < 0.03
    y0 = np.datetime64(f"{year}-01-01")
    hired = rng.random(n) < 0.12
    start = np.where(hired, y0 + rng.integers(0, 334, size=n).astype("timedelta64[D]"),
                     y0 - rng.integers(30, 20 * 365, size=n).astype("timedelta64[D]"))
    ends = rng.random(n) < 0.12
    end_off = rng.integers(0, 365, size=n).astype("timedelta64[D]")
    end = np.where(ends, np.maximum(start, y0) + end_off, np.datetime64("NaT"))
    end = np.where(ends & (end > np.datetime64(f"{year}-12-31")),
                   np.datetime64(f"{year}-12-31"), end)
    u = rng.random(n)
    unit = np.where(u < 0.05, "20", np.where(u < 0.06, "99", "10"))
    part = rng.choice(np.array([3000, 4000, 5000, 6000, 8000]), size=n)
    quota = np.where(unit == "20", FORFAIT_H, np.where(
        unit == "99", 0, np.where((rng.random(n) < 0.7) & ~multi, FULL_H,
                                  (FULL_H * part + 5000) // 10000)))
    ref = np.where(unit == "20", FORFAIT_H, np.where(unit == "99", 0, FULL_H))
    rate = np.where(unit == "10", 1188 + rng.integers(0, 2500, size=n),
                    np.where(unit == "20", 350000 + rng.integers(0, 300000, size=n),
                             30000 + rng.integers(0, 170000, size=n)))
    boeth = np.where(rng.random(n) < 0.03, rng.choice(np.array(["01", "02", "03", "08"]), n),
                     "")
    esat = (unit == "10") & (rng.random(n) < 0.002)
    # One absence for some contracts: code, block, first and last absent day, paid flag.
    a = rng.random(n)
    kinds = [(0.015, "60", "02", 112, 112), (0.02, "60", "06", 10, 90),
             (0.06, "60", "01", 3, 60), (0.01, "65", "632", 60, 300),
             (0.015, "65", "501", 5, 60)]
    code = np.full(n, "", dtype="<U3")
    block = np.full(n, "", dtype="<U2")
    length = np.zeros(n, dtype=np.int64)
    acc = 0.0
    for p, blk, c, lo, hi in kinds:
        sel = (a >= acc) & (a < acc + p) & (unit == "10")
        if c == "02":
            sel &= sex == 2
        code[sel], block[sel] = c, blk
        length[sel] = rng.integers(lo, hi + 1, size=int(sel.sum()))
        acc += p
    abs_start = np.maximum(start, np.datetime64(f"{year - 1}-12-01")) + rng.integers(
        0, 330, size=n).astype("timedelta64[D]")
    base = pl.DataFrame({
        "pid": pid, "sex": sex, "birth_date": birth.astype("datetime64[D]"),
        "employer": employer, "contract_start": start.astype("datetime64[D]"),
        "end_date": end.astype("datetime64[D]"), "unit": unit, "ref_quota_h": ref,
        "quota_h": quota, "rate": rate, "boeth": boeth, "esat": esat,
        "abs_code": code, "abs_block": block, "abs_start": abs_start.astype("datetime64[D]"),
        "abs_len": length, "abs_paid": rng.random(n) < 0.5, "multi": multi,
        "suffix": np.full(n, "A"), "end_pick": rng.integers(0, 4, size=n),
    }).with_columns(  # "" marks "absent" in the NumPy arrays; the lake wants nulls
        [pl.col(c).replace("", None) for c in ("boeth", "abs_code", "abs_block")])
    second = base.filter(pl.col("multi")).with_columns(
        employer=(pl.col("employer") + 1 + pl.col("pid") % max(1, n_employers - 1))
        % n_employers,
        suffix=pl.lit("B"), unit=pl.lit("10"), ref_quota_h=pl.lit(FULL_H, pl.Int64),
        quota_h=pl.lit((FULL_H * 3000 + 5000) // 10000, pl.Int64),
        abs_code=pl.lit(None, pl.String), abs_block=pl.lit(None, pl.String),
        boeth=pl.lit(None, pl.String), esat=pl.lit(False),
        rate=pl.lit(1500, pl.Int64))
    if n_employers < 2:
        second = second.head(0)
    people = pl.concat([base, second], how="vertical_relaxed")
    y = pl.col("birth_date").dt.year() % 100
    m = pl.col("birth_date").dt.month()
    dept = (pl.col("pid") // 998001 % 94 + 1)
    dept = pl.when(dept >= 20).then(dept + 1).otherwise(dept)
    nir = pl.concat_str([
        pl.col("sex").cast(pl.String), y.cast(pl.String).str.zfill(2),
        m.cast(pl.String).str.zfill(2), dept.cast(pl.String).str.zfill(2),
        (pl.col("pid") // 999 % 999 + 1).cast(pl.String).str.zfill(3),
        (pl.col("pid") % 999 + 1).cast(pl.String).str.zfill(3)])
    end_reason = pl.when(pl.col("end_date").is_null()).then(None).otherwise(
        pl.col("end_pick").replace_strict({0: "031", 1: "059", 2: "043", 3: "020"},
                                          return_dtype=pl.String))
    return people.with_columns(
        nir=nir,
        contract_no=pl.format("C{}{}", pl.col("pid").cast(pl.String).str.zfill(8),
                              pl.col("suffix")),
        end_reason=end_reason,
        contract_nature=pl.when(pl.col("esat")).then(pl.lit("70"))
        .when(end_reason == "031").then(pl.lit("02")).otherwise(pl.lit("01")),
        abs_end=pl.col("abs_start") + pl.duration(days=pl.col("abs_len") - 1),
    ).with_columns(
        planned_end=pl.when(pl.col("contract_nature") == "02").then(pl.col("end_date"))
        .when(pl.col("contract_nature") == "70").then(pl.lit(date(year + 1, 12, 31)))
        .otherwise(None),
    )


def _file_keys(emp: pl.DataFrame, year: int, month: int, seed: int) -> pl.DataFrame:
    """One synthetic source file per employer-month: checksum, decl_id, names."""
    tag = f"{year}{month:02d}"
    shas = [hashlib.sha256(f"gen-{seed}-{s}-{tag}".encode()).hexdigest()
            for s in emp["siret"].to_list()]
    return emp.with_columns(
        file_sha256=pl.Series(shas, dtype=pl.String),
        source_file=pl.format("gen/{}_{}_11.dsn", pl.col("siret"), pl.lit(tag)),
    ).with_columns(decl_id=pl.col("file_sha256").str.slice(0, 16) + "-18")


def _cast(df: pl.DataFrame, table: str) -> pl.DataFrame:
    schema = TABLES[table]
    return df.select([pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
                      for c, t in schema.items()])


def _write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="zstd", statistics=True)


def month_tables(people: pl.DataFrame, files: pl.DataFrame, year: int, month: int,
                 n_buckets: int) -> dict[str, pl.DataFrame]:
    """All person-keyed tables of one declared month, plus declarations and employers."""
    dim = calendar.monthrange(year, month)[1]
    first, last = date(year, month, 1), date(year, month, dim)
    lit_first, lit_last = pl.lit(first), pl.lit(last)
    active = people.filter((pl.col("contract_start") <= last)
                           & (pl.col("end_date").is_null() | (pl.col("end_date") >= first)))
    pstart = pl.max_horizontal(pl.col("contract_start"), lit_first)
    pend = pl.min_horizontal(pl.col("end_date").fill_null(lit_last), lit_last)
    a_lo = pl.max_horizontal(pl.col("abs_start"), pstart)
    a_hi = pl.min_horizontal(pl.col("abs_end"), pend)
    abs_days = pl.when(pl.col("abs_code").is_not_null() & (a_lo <= a_hi)).then(
        (a_hi - a_lo).dt.total_days() + 1).otherwise(0)
    pm = active.join(files, on="employer", how="inner").sort("employer", "pid", "suffix")
    pm = pm.with_columns(
        period_start=pstart, period_end=pend,
        days=(pend - pstart).dt.total_days() + 1, abs_days=abs_days,
        decl_month=pl.lit(first),
    ).with_columns(
        unpaid_days=pl.when(pl.col("abs_paid") & pl.col("abs_code").is_in(["02", "06"]))
        .then(0).otherwise(pl.col("abs_days")),
    ).with_columns(
        measure_h=pl.when(pl.col("unit") == "10")
        .then((pl.col("quota_h") * (pl.col("days") - pl.col("unpaid_days")) * 2 + dim)
              // (2 * dim))
        .when(pl.col("unit") == "20")
        .then((pl.col("quota_h") * pl.col("days") * 2 + dim * 100) // (200 * dim) * 100)
        .otherwise(None),
    ).with_columns(
        amount_cents=pl.when(pl.col("unit") == "10")
        .then(pl.col("rate") * pl.col("measure_h") // 100)
        .otherwise(pl.col("rate") * pl.col("days") // dim),
        person_occ=pl.int_range(pl.len()).over("employer") + 1,
        bucket=person_bucket(n_buckets),
    ).with_columns(
        line_no=60 + (pl.col("person_occ") - 1) * 190,
        contract_occ=pl.col("person_occ") * 16 + 1,
        pay_occ=pl.col("person_occ") * 16 + 2,
        ntt=pl.lit(None, pl.String),
    )
    out: dict[str, pl.DataFrame] = {}
    out["individuals"] = _cast(pm.with_columns(
        last_name=pl.lit("MARTIN"), usage_name=pl.lit(None, pl.String),
        first_names=pl.when(pl.col("sex") == 1).then(pl.lit("JEAN")).otherwise(pl.lit("MARIE")),
        birth_date_raw=pl.col("birth_date").dt.strftime("%d%m%Y"),
    ), "individuals")
    out["contracts"] = _cast(pm.with_columns(
        line_no=pl.col("line_no") + 12,
        status_conv=pl.when(pl.col("unit") == "20").then(pl.lit("04")).otherwise(pl.lit("06")),
        policy_scheme=pl.lit("99"),
        modality=pl.when(pl.col("unit") == "99").then(pl.lit("99"))
        .when(pl.col("quota_h") >= pl.col("ref_quota_h")).then(pl.lit("10"))
        .otherwise(pl.lit("20")),
        employment_status=pl.lit(None, pl.String),
    ), "contracts")
    pay_base = pm.with_columns(hours_h=pl.lit(None, pl.Int64))
    pay001 = pay_base.with_columns(pay_type=pl.lit("001"), line_no=pl.col("line_no") + 45)
    pay002 = pay_base.with_columns(pay_type=pl.lit("002"), line_no=pl.col("line_no") + 50,
                                   pay_occ=pl.col("pay_occ") + 1)
    out["pay"] = _cast(pl.concat([pay001, pay002]), "pay")
    worked = pay002.filter(pl.col("measure_h").is_not_null()
                           & ~((pl.col("unit") == "20") & (pl.col("pid") % 5 < 2)))
    acts = worked.with_columns(activity_type=pl.lit("01"), line_no=pl.col("line_no") + 5,
                               unit=pl.lit(None, pl.String))
    unpaid = pay002.filter((pl.col("unit") == "10") & (pl.col("unpaid_days") > 0)).with_columns(
        activity_type=pl.lit("02"), line_no=pl.col("line_no") + 7, unit=pl.lit(None, pl.String),
        measure_h=(pl.col("quota_h") * pl.col("unpaid_days") * 2 + dim) // (2 * dim))
    out["activities"] = _cast(pl.concat([acts, unpaid], how="vertical_relaxed"), "activities")
    absent = pm.filter(pl.col("abs_code").is_not_null() & (pl.col("abs_start") <= last)
                       & (pl.col("abs_end") >= first))
    out["work_stoppages"] = _cast(absent.filter(pl.col("abs_block") == "60").with_columns(
        line_no=pl.col("line_no") + 36, motif=pl.col("abs_code"),
        last_worked_day=pl.col("abs_start") - pl.duration(days=1),
        planned_end=pl.col("abs_end"),
        resumption_date=pl.when(pl.col("abs_end") < last)
        .then(pl.col("abs_end") + pl.duration(days=1)).otherwise(None),
    ), "work_stoppages")
    out["suspensions"] = _cast(absent.filter(pl.col("abs_block") == "65").with_columns(
        line_no=pl.col("line_no") + 40, motif=pl.col("abs_code"),
        start_date=pl.col("abs_start"), end_date=pl.col("abs_end"),
    ), "suspensions")
    out["contract_ends"] = _cast(pm.filter(
        pl.col("end_date").is_not_null() & (pl.col("end_date") >= first)
        & (pl.col("end_date") <= last)).with_columns(line_no=pl.col("line_no") + 38),
        "contract_ends")
    counts = pm.group_by("employer").agg(n_individuals=pl.col("pid").n_unique())
    constitution = last + timedelta(days=5)
    decl = files.join(counts, on="employer", how="left").with_columns(
        line_no=pl.lit(18, pl.Int64), envoi_is_test=pl.lit(False),
        norm_version=pl.lit(f"P{year % 100:02d}V01"), nature=pl.lit("01"),
        decl_type=pl.when(pl.col("n_individuals").fill_null(0) > 0).then(pl.lit("01"))
        .otherwise(pl.lit("02")),
        fraction=pl.lit("11"), order_no=pl.lit("1"), decl_month=pl.lit(first),
        replaced_id=pl.lit(None, pl.String), constitution_date=pl.lit(constitution),
        self_id=pl.lit(constitution.strftime("%d%m%Y") + "1"),
        n_individuals=pl.col("n_individuals").fill_null(0), rejected=pl.lit(False))
    out["declarations"] = _cast(decl, "declarations")
    out["employers"] = _cast(decl.with_columns(line_no=pl.lit(26, pl.Int64)), "employers")
    return out


@dataclass
class GeneratedLake:
    people: int
    employers: int
    rows: dict[str, int]
    files: int
    seconds: float


def generate_lake(root: Path, people: int, year: int, seed: int = 1, n_buckets: int = 16,
                  employers: int | None = None) -> GeneratedLake:
    """Write a committed lake (batch ``gen``) for ``people`` people over the 12 months."""
    from parsers.lake_settings import fix_bucket_count
    t0 = time.perf_counter()
    lake = Path(root) / "lake"
    fix_bucket_count(root, n_buckets)  # the lake's bucket count, as an ingestion records it
    n_emp = employers or max(1, people // PEOPLE_PER_EMPLOYER)
    emp = employers_frame(n_emp, seed)
    ppl = people_frame(people, n_emp, year, seed)
    rows: dict[str, int] = {}
    file_rows = []
    part = f"part-{BATCH}.parquet"
    n_files = 0
    for month in range(1, 13):
        files = _file_keys(emp, year, month, seed)
        tables = month_tables(ppl, files, year, month, n_buckets)
        mdir = f"month={year}-{month:02d}"
        for name, df in tables.items():
            rows[name] = rows.get(name, 0) + df.height
            if name in ("declarations", "employers"):
                _write(df, lake / name / mdir / part)
                n_files += 1
                continue
            for (bucket,), g in df.partition_by(["bucket"], as_dict=True).items():
                _write(g, lake / name / mdir / f"bucket={bucket:03d}" / part)
                n_files += 1
        file_rows.append(files.select("file_sha256", "source_file"))
        del tables
    ingested = datetime(year + 1, 1, 15, tzinfo=timezone.utc)
    files_df = _cast(pl.concat(file_rows).with_columns(
        size_bytes=pl.lit(0, pl.Int64), encoding=pl.lit("generated"), format=pl.lit("lake-gen"),
        lines_read=pl.lit(0, pl.Int64), lines_parsed=pl.lit(0, pl.Int64),
        lines_quarantined=pl.lit(0, pl.Int64), declarations=pl.lit(1, pl.Int64),
        batch_id=pl.lit(BATCH), warnings=pl.lit(0, pl.Int64), ingested_at=pl.lit(ingested),
    ), "files")
    _write(files_df, lake / "files" / part)  # last: commits the batch
    rows["files"] = files_df.height
    return GeneratedLake(people, n_emp, rows, n_files + 1, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--employers", type=int, default=None)
    a = ap.parse_args(argv)
    g = generate_lake(a.root, a.people, a.year, a.seed, a.buckets, a.employers)
    print(f"{g.people} people, {g.employers} employers, {g.files} parquet files in "
          f"{g.seconds:.1f} s; rows: {g.rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
