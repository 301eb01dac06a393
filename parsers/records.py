"""Bytes of a flat DSN file -> one row per physical line: (line_no, rubrique, value).

Why this shape: the flat NEODeS line ``Sxx.Gyy.zz.aaa,'value'`` has a fixed-width 14-char id,
so the split is two ``str.slice`` calls on whole lines read by Polars' CSV reader with a
separator that never occurs (``\\x1f``) and no quoting — ``read_csv(quote_char="'")`` would break
on legal apostrophes inside values (``'D'ARTAGNAN'``). The value runs to the LAST apostrophe.

Encoding is detected per file: valid UTF-8 containing multibyte sequences => UTF-8; otherwise
windows-1252, with Latin-1 for the five bytes cp1252 leaves undefined (so no line is ever
dropped for its encoding). Damaged characters (U+FFFD, C1 controls) are flagged per line.
"""

from __future__ import annotations

import codecs
import io

import polars as pl

from parsers import codes

ENC_UTF8 = "utf-8"
ENC_ASCII = "ascii"
ENC_CP1252 = "cp1252"
ENC_CP1252_LATIN1 = "cp1252+latin-1"  # cp1252 with undefined bytes taken as Latin-1
_ERROR_HANDLER = "cpf_latin1_fallback"
_SEPARATOR = "\x1f"  # ASCII unit separator: a forbidden control character in DSN text
DAMAGED_PATTERN = "[\u0080-\u009f\ufffd]"


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
    try:
        return data.decode("cp1252").encode("utf-8"), ENC_CP1252
    except UnicodeDecodeError:
        return data.decode("cp1252", errors=_ERROR_HANDLER).encode("utf-8"), ENC_CP1252_LATIN1


def read_lines(utf8: bytes) -> pl.DataFrame:
    """One row per physical line: ``line_no`` (1-based), ``raw`` (CR stripped, "" for blank)."""
    if not utf8:
        return pl.DataFrame(schema={"line_no": pl.Int64, "raw": pl.String})
    if _SEPARATOR.encode() in utf8:  # pathological file: slower but exact path
        text = utf8.decode("utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        raw = pl.Series("raw", lines, dtype=pl.String)
        frame = raw.to_frame()
    else:
        frame = pl.read_csv(io.BytesIO(utf8), has_header=False, separator=_SEPARATOR,
                            quote_char=None, new_columns=["raw"], infer_schema=False,
                            raise_if_empty=False)
    return frame.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line_no"),
        pl.col("raw").fill_null("").str.strip_suffix("\r"),
    )


def split_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Add ``rubrique``, ``value`` (null when malformed), ``malformed``, ``damaged``."""
    raw = pl.col("raw")
    n_chars = raw.str.len_chars()
    # Cheap fixed-position checks; the id regex runs on the 14-char slice only.
    well_formed = (
        (raw.str.slice(codes.RUBRIQUE_ID_WIDTH, 2) == ",'") & raw.str.ends_with("'")
        & (n_chars > codes.VALUE_OFFSET) & (n_chars <= codes.MAX_LINE_CHARS)
        & raw.str.slice(0, codes.RUBRIQUE_ID_WIDTH).str.contains(codes.RUBRIQUE_ID_PATTERN)
    )
    return lines.with_columns(
        pl.when(well_formed).then(raw.str.slice(0, codes.RUBRIQUE_ID_WIDTH)).alias("rubrique"),
        pl.when(well_formed)
        .then(raw.str.slice(codes.VALUE_OFFSET, n_chars - codes.VALUE_OFFSET - 1)).alias("value"),
        (~well_formed).alias("malformed"),
        raw.str.contains(DAMAGED_PATTERN).alias("damaged"),
    )
