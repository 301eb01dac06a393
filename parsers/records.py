"""Bytes of flat DSN files -> one row per physical line: (file_idx, line_no, rubrique, value).

Why this shape: the flat NEODeS line ``Sxx.Gyy.zz.aaa,'value'`` has a fixed-width 14-char id,
so the split is two ``str.slice`` calls on whole lines read by Polars' CSV reader with a
separator that never occurs (``\\x1f``) and no quoting — ``read_csv(quote_char="'")`` would break
on legal apostrophes inside values (``'D'ARTAGNAN'``). The value runs to the LAST apostrophe.

All files of a batch are decoded once each, concatenated and read by ONE ``read_csv`` call
(per-call overhead dominates on the many ~1 MB files of a DSN year); ``file_idx`` comes from the
per-file newline counts. The id is validated by an ``Enum`` cast against the norm's ids (a hash
lookup); the id regexp runs only on the rare lines whose id is not in the norm.

Encoding is detected per file: valid UTF-8 containing multibyte sequences => UTF-8; otherwise
windows-1252, with Latin-1 for the five bytes cp1252 leaves undefined (so no line is ever
dropped for its encoding). Damaged characters (U+FFFD, C1 controls) are flagged per line, the
per-line regexp running only on the files whose bytes contain one.
"""

from __future__ import annotations

import codecs
import io
import itertools
import re

import polars as pl

from parsers import codes

ENC_UTF8 = "utf-8"
ENC_ASCII = "ascii"
ENC_CP1252 = "cp1252"
ENC_CP1252_LATIN1 = "cp1252+latin-1"  # cp1252 with undefined bytes taken as Latin-1
_ERROR_HANDLER = "cpf_latin1_fallback"
_SEPARATOR = "\x1f"  # ASCII unit separator: a forbidden control character in DSN text
DAMAGED_PATTERN = "[\u0080-\u009f\ufffd]"
# The same characters in UTF-8 bytes: U+FFFD = EF BF BD, C1 controls = C2 80..C2 9F.
_DAMAGED_UTF8 = re.compile(rb"\xef\xbf\xbd|\xc2[\x80-\x9f]")
_CP1252_SPECIFIC = bytes(range(0x80, 0xA0))  # the only bytes where cp1252 differs from Latin-1
STATIC_CODE = "static_code"  # physical code in ``norm.rubrique_enum()`` (null: not a norm id)
LINES_SCHEMA = {"file_idx": pl.Int64, "line_no": pl.Int64, "raw": pl.String}


def _latin1_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    bad = err.object[err.start:err.end]
    return bad.decode("latin-1"), err.end


codecs.register_error(_ERROR_HANDLER, _latin1_fallback)


def to_utf8(data: bytes) -> tuple[bytes, str]:
    """UTF-8 bytes of ``data`` and the encoding detected for it."""
    if data.isascii():
        return data, ENC_ASCII
    try:
        data.decode("utf-8")
        return data, ENC_UTF8
    except UnicodeDecodeError:
        pass
    if len(data.translate(None, _CP1252_SPECIFIC)) == len(data):
        # No byte in 0x80-0x9F: cp1252 and Latin-1 agree, and Latin-1 decodes ~2x faster.
        return data.decode("latin-1").encode("utf-8"), ENC_CP1252
    try:
        return data.decode("cp1252").encode("utf-8"), ENC_CP1252
    except UnicodeDecodeError:
        return data.decode("cp1252", errors=_ERROR_HANDLER).encode("utf-8"), ENC_CP1252_LATIN1


def has_damaged(utf8: bytes, encoding: str) -> bool:
    """Whether the UTF-8 bytes of a file (``to_utf8``) hold a damaged character.

    ASCII and plain cp1252 cannot produce U+FFFD nor a C1 control (every cp1252 byte it
    decodes maps to a printable character), so only UTF-8 and cp1252+latin-1 inputs are
    searched, and the regexp runs only when a lead byte is present at all."""
    if encoding in (ENC_ASCII, ENC_CP1252):
        return False
    if b"\xef\xbf\xbd" in utf8:
        return True
    return b"\xc2" in utf8 and _DAMAGED_UTF8.search(utf8) is not None


def _read_raw(utf8: bytes) -> pl.Series:
    if _SEPARATOR.encode() in utf8:  # pathological file: slower but exact path
        lines = utf8.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return pl.Series("raw", lines, dtype=pl.String)
    return pl.read_csv(io.BytesIO(utf8), has_header=False, separator=_SEPARATOR,
                       quote_char=None, new_columns=["raw"], infer_schema=False,
                       raise_if_empty=False).get_column("raw")


def read_lines(utf8: bytes) -> pl.DataFrame:
    """One row per physical line: ``line_no`` (1-based), ``raw`` (CR stripped, "" for blank)."""
    return read_batch([utf8]).drop("file_idx")


def read_batch(utf8_files: list[bytes]) -> pl.DataFrame:
    """All lines of several UTF-8 files in one read: file_idx (0-based), line_no, raw."""
    blobs = [b if not b or b.endswith(b"\n") else b + b"\n" for b in utf8_files]
    counts = [b.count(b"\n") for b in blobs]
    total = sum(counts)
    if total == 0:
        return pl.DataFrame(schema=LINES_SCHEMA)
    raw = _read_raw(b"".join(blobs))
    if raw.len() != total:  # reader disagreed with the newline count: read file by file
        raw = pl.concat([_read_raw(b) for b in blobs if b])
        counts = [0 if not b else _read_raw(b).len() for b in blobs]
    ends = pl.Series(list(itertools.accumulate(counts)), dtype=pl.Int64)
    starts = ends - pl.Series(counts, dtype=pl.Int64)
    row = pl.int_range(total, dtype=pl.Int64, eager=True)
    file_idx = ends.search_sorted(row, side="right").cast(pl.Int64)  # first end > row
    frame = pl.DataFrame([file_idx.alias("file_idx"), raw.fill_null("").alias("raw")])
    return frame.select(
        "file_idx",
        (pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
         - pl.lit(starts).gather(pl.col("file_idx"))).alias("line_no"),
        pl.col("raw").str.strip_suffix("\r") if any(b"\r" in b for b in blobs) else pl.col("raw"),
    )


def split_lines(lines: pl.DataFrame, damaged_files: list[int] | None = None) -> pl.DataFrame:
    """Add ``rubrique``, ``value`` (null when malformed), ``malformed``, ``damaged`` and
    ``static_code`` (the id's code in ``norm.rubrique_enum()``, null when not a norm id).

    ``damaged_files``: the ``file_idx`` whose bytes hold a damaged character (None = check all).
    """
    from parsers.norm import rubrique_enum

    raw = pl.col("raw")
    n_chars = raw.str.len_chars()
    rub = raw.str.head(codes.RUBRIQUE_ID_WIDTH)
    shape_ok = (
        raw.str.ends_with("'") & (n_chars > codes.VALUE_OFFSET)
        & (n_chars <= codes.MAX_LINE_CHARS)
        & raw.str.head(codes.VALUE_OFFSET).str.ends_with(",'")  # ",'" at characters 15-16
    ).fill_null(False)
    df = lines.with_columns(
        rub.alias("rubrique"),
        n_chars.alias("_n"),
        shape_ok.alias("_shape"),
        # Ids of the norm need no regexp: the Enum cast is a hash lookup. Its physical code is
        # kept (``static_code``) so that ``structure.build_catalog`` does not cast again.
        rub.cast(rubrique_enum(), strict=False).to_physical().alias(STATIC_CODE),
    ).with_columns(pl.col(STATIC_CODE).is_not_null().alias("_wf"))
    other = df.get_column("_shape") & ~df.get_column("_wf")
    if other.any():  # ids outside the norm (rare): the id regexp on those lines only
        idx = other.arg_true()
        ok = df.get_column("rubrique").gather(idx).str.contains(codes.RUBRIQUE_ID_PATTERN)
        wf = df.get_column("_wf").clone()
        wf.scatter(idx.filter(ok), True)
        df = df.with_columns(wf.alias("_wf"))
    df = df.with_columns((pl.col("_wf") & pl.col("_shape")).alias("_wf"))
    if damaged_files is None:
        damaged = raw.str.contains(DAMAGED_PATTERN)
    else:  # the regexp only on the lines of the files whose bytes hold a damaged character
        flag = pl.Series("damaged", [False] * 0, dtype=pl.Boolean).extend_constant(False, df.height)
        if damaged_files:
            idx = df.get_column("file_idx").is_in(damaged_files).arg_true()
            hit = df.get_column("raw").gather(idx).str.contains(DAMAGED_PATTERN).fill_null(False)
            flag.scatter(idx.filter(hit), True)
        damaged = pl.lit(flag)
    wf = pl.col("_wf")
    return df.with_columns(
        pl.when(wf).then(pl.col("rubrique")).alias("rubrique"),
        # From character 17 to the last apostrophe (excluded): the line ends with "'" when wf.
        pl.when(wf).then(raw.str.head(-1).str.slice(codes.VALUE_OFFSET)).alias("value"),
        (~wf).alias("malformed"),
        damaged.alias("damaged"),
        pl.when(wf).then(pl.col(STATIC_CODE)).alias(STATIC_CODE),
    ).drop("_wf", "_n", "_shape")
