"""Bytes of flat DSN files -> one row per physical line: (file_idx, line_no, rubrique, value).

Why this shape: the flat NEODeS line ``Sxx.Gyy.zz.aaa,'value'`` has a fixed-width 14-char id
followed by ``,'``, and the value runs to the LAST apostrophe (apostrophes inside values are
legal: ``'D'ARTAGNAN'``), so no CSV quoting applies.

``read_split_batch`` (the flat reader's path): all files of a batch are decoded once each and
concatenated; the newlines are found in NumPy (``file_idx`` / ``line_no`` from the per-file
newline counts); the first 16 bytes of every line are two unaligned 8-byte loads, so the id is
looked up among the norm's ids by exact comparison (a hash of the two words, a binary search,
then equality — no regexp, no string cast) and the id pattern is checked byte by byte only on
the rare ids outside the norm. ``rubrique``, ``value`` and ``raw`` (kept for malformed lines
only) are Arrow string views into the batch's bytes: no per-line string is copied.
``read_batch`` + ``split_lines`` (Polars CSV reader with separator ``\x1f``, ``str.slice``) give
the same rows and remain the path of batches of 2 GiB or more (int32 view offsets).

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
from functools import lru_cache

import numpy as np
import pyarrow as pa
import polars as pl

from parsers import codes

ENC_UTF8 = "utf-8"
ENC_ASCII = "ascii"
# UTF-8 with a byte-order mark (Windows tools write one): the mark is an encoding signature,
# not DSN text, so it is dropped (left in, it made line 1 malformed and rejected the envoi);
# a body that is not UTF-8 after the mark is decoded as any other file, labelled "<enc>+bom"
ENC_UTF8_SIG = "utf-8-sig"
ENC_CP1252 = "cp1252"
ENC_CP1252_LATIN1 = "cp1252+latin-1"  # cp1252 with undefined bytes taken as Latin-1
ENC_UTF16 = "utf-16"  # with its byte-order mark (CT2025 §3.5 asks for 8-bit text)
ENC_MIXED = "utf-8+cp1252"  # lines of both (files patched or concatenated from two tools)
# A UTF-8 sequence of an accented letter (Ã© for é read as cp1252): in real cp1252 text a
# letter Ã-ï followed by a byte 0x80-0xBF (€ … ¿, ‚ „ …) does not occur in names or addresses
_UTF8_ACCENT = re.compile(rb"[\xC3\xC5][\x80-\xBF]")
_ERROR_HANDLER = "cpf_latin1_fallback"
_SEPARATOR = "\x1f"  # ASCII unit separator: a forbidden control character in DSN text
DAMAGED_PATTERN = "[\u0080-\u009f\ufffd]"
# The same characters in UTF-8 bytes: U+FFFD = EF BF BD, C1 controls = C2 80..C2 9F.
_DAMAGED_UTF8 = re.compile(rb"\xef\xbf\xbd|\xc2[\x80-\x9f]")
# Bytes 0x80-0x9F (first, count): the only ones where cp1252 differs from Latin-1.
_C1_FIRST, _C1_COUNT = 0x80, 0x20
STATIC_CODE = "static_code"  # physical code in ``norm.rubrique_enum()`` (null: not a norm id)
LINES_SCHEMA = {"file_idx": pl.Int64, "line_no": pl.Int64, "raw": pl.String}


def _latin1_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    bad = err.object[err.start:err.end]
    return bad.decode("latin-1"), err.end


codecs.register_error(_ERROR_HANDLER, _latin1_fallback)


def to_utf8(data: bytes) -> tuple[bytes, str]:
    """UTF-8 bytes of ``data`` and the encoding detected for it (with ``+`` what was mended
    in the line ends: ``cr`` CR-only line ends, ``crcrlf`` CR CR LF, ``eof`` a DOS end-of-file
    mark; ``utf-16`` for a UTF-16 file with its byte-order mark)."""
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if utf16:  # a byte short (cut in transfer, a 1-byte DOS end mark) or a lone surrogate:
        # U+FFFD, flagged on its line, never an error that stops the ingestion (round-7 H2)
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    data, mended = _mend_line_ends(data)
    utf8, encoding = _decode(data)
    return utf8, "+".join([ENC_UTF16 if utf16 else encoding, *mended])


def _decode(data: bytes) -> tuple[bytes, str]:
    """UTF-8 bytes of ``data`` (line ends mended) and its encoding."""
    if data.startswith(codecs.BOM_UTF8):
        utf8, encoding = _decode(data[len(codecs.BOM_UTF8):])
        return utf8, ENC_UTF8_SIG if encoding in (ENC_ASCII, ENC_UTF8) else f"{encoding}+bom"
    if data.isascii():
        return data, ENC_ASCII
    try:
        data.decode("utf-8")
        return data, ENC_UTF8
    except UnicodeDecodeError:
        pass
    if _UTF8_ACCENT.search(data):  # UTF-8 lines among others: each line as it was written
        return _mixed_to_utf8(data), ENC_MIXED
    raw = np.frombuffer(data, np.uint8)
    high = np.flatnonzero(raw >= _C1_FIRST)  # the non-ASCII bytes (found in NumPy)
    if not (raw[high] < _C1_FIRST + _C1_COUNT).any():
        # No byte in 0x80-0x9F: cp1252 and Latin-1 agree.
        return _latin1_to_utf8(data, high), ENC_CP1252
    try:
        return data.decode("cp1252").encode("utf-8"), ENC_CP1252
    except UnicodeDecodeError:
        return data.decode("cp1252", errors=_ERROR_HANDLER).encode("utf-8"), ENC_CP1252_LATIN1


# a CR ending a line: followed by the next line's rubrique id, or ending the file (perhaps
# before the U+FFFD of a file cut mid-character) — a CR inside a value ('MA<CR>RTIN') is no
# line end (mending it split the line: round-8 pass)
_LONE_CR = re.compile(rb"\r(?=S[0-9]{2}\.G[0-9]{2}\.|(?:\xef\xbf\xbd)*\Z)")


def _mend_line_ends(data: bytes) -> tuple[bytes, list[str]]:
    """Line ends a transfer or an old tool leaves, mended before the lines are split (they
    made every line malformed, or the last one, and the reason did not say why: ingestion
    acceptance pass L2): CR-only ends (of every line or of some), CR CR LF (a CR-LF file converted twice
    by an FTP ASCII transfer), a DOS end-of-file mark (0x1A) after the last line. Three byte
    searches per file; nothing is copied for a file that needs none."""
    mended = []
    if data.endswith(b"\x1a"):
        data = data.rstrip(b"\x1a")
        mended.append("eof")
    if b"\r\r\n" in data:
        data = data.replace(b"\r\r\n", b"\r\n")
        mended.append("crcrlf")
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):  # CR-only ends, in
        # the whole file or in some of its lines (two files glued: round-7 pass M1)
        data, n = _LONE_CR.subn(b"\n", data)
        if n:
            mended.append("cr")
    return data, mended


def _mixed_to_utf8(data: bytes) -> bytes:
    """A file whose lines are UTF-8 or cp1252, line by line: decoded as one, every UTF-8 name
    became mojibake (GARÃ‡ON) and nothing said so (ingestion acceptance pass M2). Only files
    that are not UTF-8 yet hold UTF-8 accents come here (rare): a line loop is affordable."""
    out = []
    for line in data.splitlines(keepends=True):
        try:
            line.decode("utf-8")
            out.append(line)
        except UnicodeDecodeError:
            out.append(line.decode("cp1252", errors=_ERROR_HANDLER).encode("utf-8"))
    return b"".join(out)


_UTF8_OF_LATIN1 = [bytes([b]).decode("latin-1").encode("utf-8") for b in range(256)]
# splice when at most 1 byte in this many is non-ASCII: per 441 KiB file the splice costs
# 0.2 ms at 1 accent per 5000 bytes, 0.4 ms at 1/1000, 1.2 ms at 1/250, the codec 0.85 ms
SPLICE_MAX_SHARE = 1024


def _latin1_to_utf8(data: bytes, high: np.ndarray) -> bytes:
    """UTF-8 of Latin-1 ``data`` whose non-ASCII bytes are at ``high``. DSN text is almost
    all ASCII (accents in a few names and addresses): the ASCII runs between those bytes are
    joined with each one's 2-byte UTF-8 form, one copy of the text instead of a decode and
    an encode (2-4x cheaper at DSN densities, measured); text dense in accents takes the codec."""
    if len(high) * SPLICE_MAX_SHARE > len(data):
        return data.decode("latin-1").encode("utf-8")
    view, parts, prev = memoryview(data), [], 0
    for i in high.tolist():
        parts += (view[prev:i], _UTF8_OF_LATIN1[data[i]])
        prev = i + 1
    parts.append(view[prev:])
    return b"".join(parts)


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


# --- Fast path: lines split in NumPy, columns built as zero-copy Arrow string views ---------
# Arrow/Polars string views hold 16 bytes per string: length (int32), then either the string
# itself when it has at most 12 bytes, or its first 4 bytes, a buffer index and an offset.
_VIEW_INLINE = 12
_PAD = 24  # bytes of zero padding after a batch's text (8-byte loads at line start + 16)
_MAX_VIEW_OFFSET = 2**31 - 1  # view offsets are int32
_ID_DIGITS = (1, 2, 5, 6, 8, 9, 11, 12, 13)  # "S21.G00.30.001": the digit positions
_ID_LITERALS = {0: ord("S"), 3: ord("."), 4: ord("G"), 7: ord("."), 10: ord(".")}
_QUOTE, _CR, _LF = ord("'"), ord("\r"), ord("\n")
_COMMA_QUOTE = ord(",") | (ord("'") << 8)
_ID_HI_MASK = np.uint64((1 << 48) - 1)  # bytes 8-13 of the id (bytes 14-15 are ",'")
RECORDS_SCHEMA = {"file_idx": pl.Int64, "line_no": pl.Int64, "raw": pl.String,
                  "rubrique": pl.String, "value": pl.String, "malformed": pl.Boolean,
                  "damaged": pl.Boolean, STATIC_CODE: pl.UInt32}


class _IdBytes:
    """Column access ``w[:, pos]`` to the first 16 bytes of the lines, held as two 8-byte
    row blocks (bytes 0-7 and 8-15)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo, self.hi = lo, hi
        self.shape = (lo.shape[0], codes.RUBRIQUE_ID_WIDTH)

    def __getitem__(self, key: tuple) -> np.ndarray:
        pos = key[1]
        return self.lo[:, pos] if pos < 8 else self.hi[:, pos - 8]


def _id_hash(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A 64-bit mix of the two id words (a candidate lookup, confirmed by exact comparison)."""
    return lo ^ (hi * np.uint64(0x9E3779B97F4A7C15))


@lru_cache(maxsize=None)
def _norm_id_words() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The norm's ids as (bytes 0-7, bytes 8-13) words and their ``rubrique_enum()`` codes,
    ordered by ``_id_hash``."""
    from parsers.norm import rubrique_enum

    ids = rubrique_enum().categories.to_list()
    raw = np.zeros((len(ids), 16), np.uint8)
    raw[:, :codes.RUBRIQUE_ID_WIDTH] = np.frombuffer("".join(ids).encode("ascii"),
                                                     np.uint8).reshape(len(ids), -1)
    words = raw.view("<u8")
    lo, hi = words[:, 0].copy(), words[:, 1].copy()
    h = _id_hash(lo, hi)
    if len(np.unique(h)) != len(h):
        raise ValueError("rubrique id hash collision")
    order = np.argsort(h, kind="stable")
    return lo[order], hi[order], order.astype(np.uint32)


@lru_cache(maxsize=None)
def _norm_id_hashes() -> np.ndarray:
    lo, hi, _ = _norm_id_words()
    return _id_hash(lo, hi)


_KEEP_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], np.uint64)


def _words(pad: np.ndarray, width: int) -> np.ndarray:
    """Unaligned little-endian ``width``-byte words at every byte offset of ``pad`` (a view)."""
    return np.ndarray((len(pad) - 8,), f"<u{width}", pad, 0, (1,))


def _views(u32: np.ndarray, u64: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Arrow string views (n x 16 bytes) of the byte ranges ``[starts, starts + lens)`` of the
    buffer whose unaligned 4- and 8-byte words are ``u32`` / ``u64``."""
    n = len(starts)
    v = np.empty((n, 2), np.uint64)
    first = u32[starts].astype(np.uint64)  # bytes 0-3: prefix, or inline bytes 0-3
    first &= _KEEP_BYTES[np.minimum(lens, 4)]
    v[:, 0] = lens.astype(np.uint64) | (first << np.uint64(32))
    # Short strings: inline bytes 4-11; long ones: buffer index 0, then the offset.
    v[:, 1] = np.where(lens <= _VIEW_INLINE,
                       u64[starts + 4] & _KEEP_BYTES[np.clip(lens - 4, 0, 8)],
                       starts.astype(np.uint64) << np.uint64(32))
    return v


def _string_views(name: str, data: pa.Buffer, words: tuple[np.ndarray, np.ndarray],
                  starts: np.ndarray, lens: np.ndarray,
                  valid: np.ndarray | None = None) -> pl.Series:
    """A String Series viewing ``data`` (no copy of the bytes); null where not ``valid``
    (the views are then built for the valid rows only)."""
    n = len(starts)
    validity = None
    if valid is None or valid.all():
        views = _views(*words, starts, lens)
    else:
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        views = np.zeros((n, 2), np.uint64)
        idx = np.flatnonzero(valid)
        if len(idx):
            views[idx] = _views(*words, starts[idx], lens[idx])
    arr = pa.Array.from_buffers(pa.string_view(), n, [validity, pa.py_buffer(views), data])
    return pl.Series(name, pl.from_arrow(arr), dtype=pl.String)


def _id_views(data: pa.Buffer, lo: np.ndarray, starts: np.ndarray, valid: np.ndarray) -> pl.Series:
    """``rubrique``: views of the 14-byte ids (prefix = their first 4 bytes, from ``lo``)."""
    n = len(starts)
    views = np.empty((n, 2), np.uint64)
    views[:, 0] = (lo << np.uint64(32)) | np.uint64(codes.RUBRIQUE_ID_WIDTH)
    views[:, 1] = starts.astype(np.uint64) << np.uint64(32)
    validity = None
    if not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        views[~valid] = 0
    arr = pa.Array.from_buffers(pa.string_view(), n, [validity, pa.py_buffer(views), data])
    return pl.Series("rubrique", pl.from_arrow(arr), dtype=pl.String)


def read_split_batch(utf8_files: list[bytes], damaged_files: list[int] | None = None) -> pl.DataFrame:
    """``split_lines(read_batch(utf8_files), damaged_files)`` without any per-line string
    work in Polars: the newlines are found in NumPy, the id checked and coded from its 14 bytes
    (digits + literals, then a binary search in the norm's ids), and ``raw``, ``rubrique``
    and ``value`` are Arrow string views into the batch's bytes (one buffer, not copied).

    Line length is measured in bytes, then in characters only for the (rare) lines longer
    than ``MAX_LINE_CHARS`` bytes; a non-ASCII byte in the first 16 bytes fails the id check,
    so byte and character positions agree on every well-formed line."""
    blobs = [b if not b or b.endswith(b"\n") else b + b"\n" for b in utf8_files]
    size = sum(map(len, blobs))
    if size >= _MAX_VIEW_OFFSET:  # int32 view offsets: the Polars CSV path
        return split_lines(read_batch(utf8_files), damaged_files)
    # Zero padding after the text: the 4/8-byte loads at any line start stay in bounds.
    blob = b"".join([*blobs, bytes(_PAD)])
    pad = np.frombuffer(blob, np.uint8)
    buf = pad[:size]
    ends = np.flatnonzero(buf == _LF)
    n = len(ends)
    if n == 0:
        return pl.DataFrame(schema=RECORDS_SCHEMA)
    file_ends = np.cumsum(np.fromiter(map(len, blobs), np.int64, len(blobs)))
    counts = np.diff(np.searchsorted(ends, file_ends), prepend=0)  # newlines per file
    file_idx = np.repeat(np.arange(len(blobs), dtype=np.int64), counts)
    first_row = np.cumsum(counts) - counts
    line_no = np.arange(1, n + 1, dtype=np.int64) - np.repeat(first_row, counts)
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    ends = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR))  # CR-LF
    lens = ends - starts
    words = (_words(pad, 4), _words(pad, 8))
    # The 16 first bytes of every line (two unaligned 8-byte loads): id, then ",'".
    lo = words[1][starts]
    hi = words[1][starts + 8]
    # at least one character between the quotes: an empty value is a structure error
    # (CT2025 §4.4), whatever the rubrique (the enrichment ones have no length bound)
    shape = ((lens > codes.VALUE_OFFSET + 1) & (pad[np.maximum(ends - 1, 0)] == _QUOTE)
             & ((hi >> np.uint64(48)) == _COMMA_QUOTE))  # bytes 14-15 are ",'"
    # Exact match against the norm's ids (their 14 bytes as two words: bytes 0-7, 8-13).
    hi_id = hi & _ID_HI_MASK
    norm_lo, norm_hi, norm_codes = _norm_id_words()
    h = _id_hash(lo, hi_id)
    pos = np.minimum(np.searchsorted(_norm_id_hashes(), h), len(norm_lo) - 1)
    in_norm = shape & (norm_lo[pos] == lo) & (norm_hi[pos] == hi_id)
    wf = in_norm.copy()
    other = shape & ~in_norm
    if other.any():  # ids outside the norm (rare): the id pattern, byte by byte
        idx = np.flatnonzero(other)
        w = _IdBytes(lo[idx].view(np.uint8).reshape(-1, 8), hi[idx].view(np.uint8).reshape(-1, 8))
        ok = np.ones(len(idx), bool)
        for p, byte in _ID_LITERALS.items():
            ok &= w[:, p] == byte
        for p in _ID_DIGITS:
            ok &= (w[:, p] - np.uint8(ord("0"))) <= 9  # uint8 wraps: one comparison
        wf[idx[ok]] = True
    data = pa.py_buffer(blob)
    long = wf & (lens > codes.MAX_LINE_CHARS)
    if long.any():  # characters, not bytes, count: only on the lines too long in bytes
        idx = np.flatnonzero(long)
        chars = _string_views("raw", data, words, starts[idx], lens[idx]).str.len_chars()
        wf[idx[(chars > codes.MAX_LINE_CHARS).to_numpy()]] = False
        in_norm &= wf
    static = pl.Series(STATIC_CODE, norm_codes[pos], dtype=pl.UInt32)
    if not in_norm.all():
        static = pl.select(pl.when(pl.lit(pl.Series(in_norm))).then(pl.lit(static))).to_series()
    if damaged_files is None:
        damaged_files = list(range(len(blobs)))
    check = np.isin(file_idx, damaged_files) if damaged_files else np.zeros(n, bool)
    damaged = np.zeros(n, bool)
    if check.any():  # the regexp only on the lines of the files holding a damaged character
        idx = np.flatnonzero(check)
        hit = _string_views("raw", data, words, starts[idx], lens[idx]).str.contains(
            DAMAGED_PATTERN).fill_null(False).to_numpy()
        damaged[idx[hit]] = True
    return pl.DataFrame([
        pl.Series("file_idx", file_idx), pl.Series("line_no", line_no),
        # ``raw`` is only read for malformed lines (the quarantine shows them whole).
        _string_views("raw", data, words, starts, lens, ~wf),
        _id_views(data, lo, starts, wf),
        _string_views("value", data, words, starts + codes.VALUE_OFFSET,
                      lens - codes.VALUE_OFFSET - 1, wf),
        pl.Series("malformed", ~wf),
        pl.Series("damaged", damaged),
        static.alias(STATIC_CODE),
    ])


def named_id() -> pl.Expr:
    """The rubrique id a MALFORMED line still names (its first 14 characters, when they are an
    id: ``S21.G00.30.010,LYON`` lost its quotes, not its id), else null; on ``raw``, which is
    kept for malformed lines only. Read by validation (a key rubrique's line rejects the
    declaration) and by the quarantine (its ``rubrique`` column)."""
    head = pl.col("raw").str.head(codes.RUBRIQUE_ID_WIDTH)
    return pl.when(pl.col("malformed") & head.str.contains(codes.RUBRIQUE_ID_PATTERN)).then(head)


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
        raw.str.ends_with("'") & (n_chars > codes.VALUE_OFFSET + 1)  # non-empty value
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
