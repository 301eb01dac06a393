"""Readers of the account inputs: ``--holders`` and ``--balances`` CSV files.

Bad rows are reported as ``InputError`` values with their LINE NUMBER (header = line 1) and
left out of the returned frame; nothing is silently ignored. Validation is vectorised (Polars)
and reads the file 64 MB at a time: a national --balances file (37 M accounts, 0.8 GB) is
validated in ~30 s with a 3.6 GB peak (measured; Python lines took 126 s and 10.8 GB).
Rows come back in file order (consumers join on the NIR).

holders:  header ``nir,low_qualified_declared_on,low_qualified_withdrawn_on`` (ISO dates,
          withdrawal optional)
balances: header ``nir,earned_balance_cents`` (integer cents, >= 0)
(--dotations, read by ``pipeline.dotations.read_dotations``, goes through the same reader.)
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Iterator
from pathlib import Path

import polars as pl

from parsers.records import read_lines
from parsers.validate import nir_valid

# Not a legal figure: an overflow guard. Amounts are summed in Int64 cents; with this bound
# 92 million rows still sum below 2**63 (a national file holds 37 M), where a value near 2**63
# wrapped around to a negative balance.
MAX_AMOUNT_CENTS = 10**11  # 1 billion euros
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
        what = " ".join(x for x in (self.field, None if self.value is None else repr(self.value))
                        if x)
        return f"{where}: {what + ': ' if what else ''}{self.reason}"


CHUNK_BYTES = 64 << 20  # text parsed at a time: memory follows the valid rows, not the lines
Check = tuple[str, pl.Expr, str]  # (field reported, bad-row predicate, reason)
NIR_CHECK: Check = ("nir", ~nir_valid(pl.col("nir")),
                    "invalid NIR (13 characters as in DSN, no key: S21.G00.30.001's pattern)")


def amount_guard(field: str, typed: str) -> Check:
    """An amount in cents (``typed``: its Int64 cast) within ``MAX_AMOUNT_CENTS``."""
    return (field, pl.col(typed).abs() > MAX_AMOUNT_CENTS,
            f"beyond {MAX_AMOUNT_CENTS} cents (an overflow guard, not a legal limit)")


class UnreadableLine(ValueError):
    """Bytes that are not UTF-8, located: the line an operator must fix."""

    def __init__(self, line_no: int, reason: str):
        super().__init__(reason)
        self.line_no = line_no


def _first_bad_utf8_line(text: bytes, first: int) -> UnreadableLine | None:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return UnreadableLine(first + text.count(b"\n", 0, exc.start),
                              f"not UTF-8 (byte 0x{text[exc.start]:02x}); save the file as UTF-8")
    return None


def _line_chunks(path: Path) -> Iterator[pl.DataFrame]:
    """(line_no, raw) of every physical line of a UTF-8 file (BOM dropped, CR stripped, ""
    when blank), read ``CHUNK_BYTES`` at a time and cut after a newline. Lines are split by
    Polars (``parsers.records.read_lines``): Python strings for the 37 M lines of a national
    --balances file took 10.8 GB."""
    first, rest = 1, b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK_BYTES)
            if first == 1 and not rest and block.startswith(codecs.BOM_UTF8):
                block = block[len(codecs.BOM_UTF8):]
            text = rest + block
            cut = text.rfind(b"\n") + 1 if block else len(text)  # at EOF: the last line too
            rest = text[cut:]
            if cut:
                if (bad := _first_bad_utf8_line(text[:cut], first)) is not None:
                    raise bad
                lines = read_lines(text[:cut])
                yield lines.with_columns(pl.col("line_no") + (first - 1))
                first += lines.height
            if not block:
                return


def read_checked(path: Path, header: list[str], typed: list[pl.Expr], checks: list[Check],
                  keep: list[str], unique: str | None = "nir"
                  ) -> tuple[pl.DataFrame | None, list[InputError]]:
    """Rows of a CSV input that pass every check, as ``line_no`` + ``keep`` columns (None when
    the file is unreadable or its header wrong), and the errors with their line numbers, sorted.

    Per chunk of text: split the fields (stripped, quotes removed), add the ``typed``
    columns, apply the row-local ``checks``; only ``line_no``, the ``keep`` columns and the
    verdict stay. Then, over the whole file, a value of ``unique`` (the NIR) seen on an
    earlier line is a duplicate (first occurrence kept, whatever else is wrong with it)."""
    p = str(path)
    errors: list[InputError] = []
    kept: list[pl.DataFrame] = []
    try:
        for lines in _line_chunks(Path(path)):
            if not kept:  # the first chunk starts with the header
                first = lines.get_column("raw")[0] if lines.height else ""
                if [h.strip() for h in first.split(",")] != header:
                    return None, [InputError(p, 1, "header", first,
                                             f"expected header {','.join(header)}")]
                lines = lines.slice(1)
            raw = (lines.rename({"raw": "line"})
                   .filter(pl.col("line").str.strip_chars() != "")  # blank: no data
                   .with_columns((pl.col("line").str.count_matches(",", literal=True) + 1)
                                 .alias("_n")))
            errors += [InputError(p, r[0], None, r[1], f"expected {len(header)} fields, "
                                  f"got {r[2]}")
                       for r in raw.filter(pl.col("_n") != len(header))
                       .select("line_no", "line", "_n").iter_rows()]
            parts = pl.col("line").str.split_exact(",", len(header) - 1)  # a struct
            df = (raw.filter(pl.col("_n") == len(header))
                  .with_columns([parts.struct.field(f"field_{i}").str.strip_chars()
                                 .str.strip_chars('"').alias(h) for i, h in enumerate(header)])
                  .with_columns(typed))
            bad_any = pl.lit(False)
            for field, bad, reason in checks:
                bad = bad.fill_null(False)  # a null comparison is not an error
                errors += [InputError(p, r[0], field, r[1], reason) for r in
                           df.filter(bad).select("line_no", pl.col(field).cast(pl.String))
                           .iter_rows()]
                bad_any = bad_any | bad
            kept.append(df.select("line_no", *keep, bad_any.alias("_bad")))
    except UnreadableLine as exc:
        return None, [InputError(p, exc.line_no, None, None, f"unreadable line: {exc}")]
    except (OSError, UnicodeDecodeError, pl.exceptions.ComputeError) as exc:
        return None, [InputError(p, None, None, None, f"unreadable file: {exc}")]
    if not kept:  # an empty file: no header
        return None, [InputError(p, 1, "header", "", f"expected header {','.join(header)}")]
    df = pl.concat(kept, rechunk=False).with_columns(
        (_dup_check(unique) if unique else pl.lit(False)).alias("_dup"))
    del kept
    if unique:
        errors += [InputError(p, r[0], unique, r[1], "duplicate NIR (first occurrence kept)")
                   for r in df.filter("_dup").select("line_no", unique).iter_rows()]
    good = df.filter(~pl.col("_bad") & ~pl.col("_dup")).select("line_no", *keep)
    return good, sorted(errors, key=lambda e: (e.line_no or 0, e.field or ""))


def _dup_check(field: str = "nir") -> pl.Expr:
    """A repeated value after its first line (rows are in line order): one hash pass, where
    a window minimum over 37 M national NIR strings took minutes."""
    return ~pl.col(field).is_first_distinct()


def read_holders(path: Path) -> tuple[pl.DataFrame, list[InputError]]:
    """nir (String), low_qualified_declared_on (Date), low_qualified_withdrawn_on (Date|null),
    in file order."""
    schema = {"nir": pl.String, "low_qualified_declared_on": pl.Date,
              "low_qualified_withdrawn_on": pl.Date}
    withdrawn = pl.when(pl.col("low_qualified_withdrawn_on") == "").then(None) \
        .otherwise(pl.col("low_qualified_withdrawn_on"))
    good, errors = read_checked(Path(path), HOLDERS_HEADER, typed=[
        pl.col("low_qualified_declared_on").str.to_date("%Y-%m-%d", strict=False).alias("_d"),
        withdrawn.alias("low_qualified_withdrawn_on"),
        withdrawn.str.to_date("%Y-%m-%d", strict=False).alias("_w"),
    ], checks=[
        NIR_CHECK,
        ("low_qualified_declared_on", pl.col("_d").is_null(),
         "missing or invalid date (YYYY-MM-DD)"),
        ("low_qualified_withdrawn_on",
         pl.col("low_qualified_withdrawn_on").is_not_null() & pl.col("_w").is_null(),
         "invalid date (YYYY-MM-DD)"),
        ("low_qualified_withdrawn_on", pl.col("_w") < pl.col("_d"),
         "withdrawal before declaration"),
    ], keep=["nir", "_d", "_w"])
    if good is None:
        return pl.DataFrame(schema=schema), errors
    return good.select("nir", pl.col("_d").alias("low_qualified_declared_on"),
                       pl.col("_w").alias("low_qualified_withdrawn_on")), errors


def read_balances(path: Path) -> tuple[pl.DataFrame, list[InputError]]:
    """nir (String), earned_balance_cents (Int64, >= 0), in file order."""
    schema = {"nir": pl.String, "earned_balance_cents": pl.Int64}
    good, errors = read_checked(Path(path), BALANCES_HEADER, typed=[
        pl.col("earned_balance_cents").str.strip_chars().cast(pl.Int64, strict=False)
        .alias("_b"),
    ], checks=[
        NIR_CHECK,
        ("earned_balance_cents", pl.col("_b").is_null(), "not an integer number of cents"),
        ("earned_balance_cents", pl.col("_b") < 0, "negative balance"),
        amount_guard("earned_balance_cents", "_b"),
    ], keep=["nir", "_b"])
    if good is None:
        return pl.DataFrame(schema=schema), errors
    return good.select("nir", pl.col("_b").alias("earned_balance_cents")), errors
