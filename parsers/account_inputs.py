"""Readers of the account inputs: ``--holders`` and ``--balances`` CSV files.

Bad rows are reported as ``InputError`` values with their LINE NUMBER (header = line 1) and
left out of the returned frame; nothing is silently ignored. Validation is vectorised (Polars).

holders:  header ``nir,low_qualified_declared_on,low_qualified_withdrawn_on`` (ISO dates,
          withdrawal optional)
balances: header ``nir,earned_balance_cents`` (integer cents, >= 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

NIR_RE = r"^[12][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}$"
HOLDERS_HEADER = ["nir", "low_qualified_declared_on", "low_qualified_withdrawn_on"]
BALANCES_HEADER = ["nir", "earned_balance_cents"]


@dataclass(frozen=True)
class InputError:
    path: str
    line_no: int | None  # 1-based line in the file (header = 1); None for whole-file errors
    field: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line_no}" if self.line_no else self.path
        return f"{where}: {self.field or ''} {self.value!r}: {self.reason}"


def _read_raw(path: Path, header: list[str]) -> tuple[pl.DataFrame | None, list[InputError]]:
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [InputError(p, None, None, None, f"unreadable file: {exc}")]
    lines = text.splitlines()
    if not lines or [h.strip() for h in lines[0].split(",")] != header:
        got = lines[0] if lines else ""
        return None, [InputError(p, 1, "header", got, f"expected header {','.join(header)}")]
    raw = pl.DataFrame({"line": lines[1:]}).with_row_index("idx").with_columns(
        (pl.col("idx").cast(pl.Int64) + 2).alias("line_no"))
    raw = raw.filter(pl.col("line").str.strip_chars() != "")  # blank lines carry no data
    raw = raw.with_columns((pl.col("line").str.count_matches(",", literal=True) + 1)
                           .alias("_n"))
    errors = [InputError(p, r["line_no"], None, r["line"],
                         f"expected {len(header)} fields, got {r['_n']}")
              for r in raw.filter(pl.col("_n") != len(header)).iter_rows(named=True)]
    parts = pl.col("line").str.split_exact(",", len(header) - 1)  # a struct: no list per row
    ok = raw.filter(pl.col("_n") == len(header)).with_columns(
        [parts.struct.field(f"field_{i}").str.strip_chars().str.strip_chars('"').alias(h)
         for i, h in enumerate(header)])
    return ok, errors


def _collect_errors(df: pl.DataFrame, path: Path, checks: list[tuple[str, pl.Expr, str]]
                    ) -> tuple[pl.DataFrame, list[InputError]]:
    """Apply (field, bad-row predicate, reason) checks; return good rows and errors."""
    errors: list[InputError] = []
    bad_any = pl.lit(False)
    for field, bad, reason in checks:
        bad = bad.fill_null(False)  # a null comparison is not an error (and must not drop rows)
        for r in df.filter(bad).select("line_no", pl.col(field).cast(pl.String)).iter_rows():
            errors.append(InputError(str(path), r[0], field, r[1], reason))
        bad_any = bad_any | bad
    return df.filter(~bad_any), errors


def _dup_check(field: str = "nir") -> pl.Expr:
    """A repeated value after its first line (rows are in line order): one hash pass, where
    a window minimum over 37 M national NIR strings took minutes."""
    return ~pl.col(field).is_first_distinct()


def read_holders(path: Path) -> tuple[pl.DataFrame, list[InputError]]:
    """nir (String), low_qualified_declared_on (Date), low_qualified_withdrawn_on (Date|null)."""
    schema = {"nir": pl.String, "low_qualified_declared_on": pl.Date,
              "low_qualified_withdrawn_on": pl.Date}
    raw, errors = _read_raw(Path(path), HOLDERS_HEADER)
    if raw is None:
        return pl.DataFrame(schema=schema), errors
    df = raw.with_columns(
        pl.col("low_qualified_declared_on").str.to_date("%Y-%m-%d", strict=False).alias("_d"),
        pl.when(pl.col("low_qualified_withdrawn_on") == "").then(None)
        .otherwise(pl.col("low_qualified_withdrawn_on")).alias("low_qualified_withdrawn_on"))
    df = df.with_columns(
        pl.col("low_qualified_withdrawn_on").str.to_date("%Y-%m-%d", strict=False).alias("_w"))
    good, errs = _collect_errors(df, Path(path), [
        ("nir", ~pl.col("nir").str.contains(NIR_RE), "invalid NIR (13 characters, no key)"),
        ("nir", _dup_check(), "duplicate NIR (first occurrence kept)"),
        ("low_qualified_declared_on", pl.col("_d").is_null(), "missing or invalid date (YYYY-MM-DD)"),
        ("low_qualified_withdrawn_on",
         pl.col("low_qualified_withdrawn_on").is_not_null() & pl.col("_w").is_null(),
         "invalid date (YYYY-MM-DD)"),
        ("low_qualified_withdrawn_on", pl.col("_w") < pl.col("_d"),
         "withdrawal before declaration"),
    ])
    out = good.select("nir", pl.col("_d").alias("low_qualified_declared_on"),
                      pl.col("_w").alias("low_qualified_withdrawn_on")).sort("nir")
    return out, sorted(errors + errs, key=lambda e: (e.line_no or 0, e.field or ""))


def read_balances(path: Path) -> tuple[pl.DataFrame, list[InputError]]:
    """nir (String), earned_balance_cents (Int64, >= 0)."""
    schema = {"nir": pl.String, "earned_balance_cents": pl.Int64}
    raw, errors = _read_raw(Path(path), BALANCES_HEADER)
    if raw is None:
        return pl.DataFrame(schema=schema), errors
    df = raw.with_columns(pl.col("earned_balance_cents").str.strip_chars()
                          .cast(pl.Int64, strict=False).alias("_b"))
    good, errs = _collect_errors(df, Path(path), [
        ("nir", ~pl.col("nir").str.contains(NIR_RE), "invalid NIR (13 characters, no key)"),
        ("nir", _dup_check(), "duplicate NIR (first occurrence kept)"),
        ("earned_balance_cents", pl.col("_b").is_null(), "not an integer number of cents"),
        ("earned_balance_cents", pl.col("_b") < 0, "negative balance"),
    ])
    out = good.select("nir", pl.col("_b").alias("earned_balance_cents")).sort("nir")
    return out, sorted(errors + errs, key=lambda e: (e.line_no or 0, e.field or ""))
