"""The receiver lot envelope's own totals (dsn_format.md §1.6, norm V01R02): a group's
``S96.G51.00.002`` (number of DSN) against the envois the group holds, and a lot without its
trailer ``S95.G51.00``. They are the receiver's only sign that a DSN of the lot was lost in
transfer or that the lot was cut short (as S90 is for lines), so a mismatch is a warning on
the envelope line, never silent (ingestion acceptance pass M4). The lot's group count
(S05/S95 ``.006``/``.002``) is not compared: the real anonymised lot declares 3 groups and
holds 4 (``DSNOK`` and three empty ones), so its meaning is not settled.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from parsers import codes
from parsers.codes import Reason
from parsers.structure import Catalog

GROUP, GROUP_END, LOT, LOT_END = "S06.G51.00", "S96.G51.00", "S05.G51.00", "S95.G51.00"
GROUP_DSN_COUNT = "S96.G51.00.002"


def lot_anomalies(df: pl.DataFrame, cat: Catalog) -> pl.DataFrame:
    """(row, own_reason, own_detail) warnings: ``lot_count_mismatch`` on a group trailer whose
    DSN count differs from the envois of its group, ``lot_truncated`` on the last line of a file
    that opens a lot (S05) and has no S95."""
    none = pl.DataFrame(schema={"row": pl.UInt32, "own_reason": pl.String,
                                "own_detail": pl.String})
    b_lot = cat.bcode(LOT)
    if b_lot < 0:
        return none
    cols = df.select("row", "file_idx", "line_no", pl.col("bcode").fill_null(-1), "is_new",
                     "rcode", "value")
    bcode = cols.get_column("bcode").to_numpy()
    if not (bcode == b_lot).any():  # no lot envelope in the batch: nothing to compare
        return none
    file_idx = cols.get_column("file_idx").to_numpy()
    is_new = cols.get_column("is_new").to_numpy()
    is_group, is_end = bcode == cat.bcode(GROUP), bcode == cat.bcode(GROUP_END)
    group = np.cumsum(is_group)  # lines after the n-th S06 (ids unique in the batch)
    # a group holds the envois between its S06 and its S96, in its own file: the envois of the
    # next files of a batch are in no group (they were counted in a lot's last group: M1)
    file_start = np.empty(len(bcode), bool)
    file_start[:1] = True
    np.not_equal(file_idx[1:], file_idx[:-1], out=file_start[1:])
    marks = np.where(is_group | is_end | file_start, np.arange(len(bcode)), -1)
    np.maximum.accumulate(marks, out=marks)
    open_group = (marks >= 0) & is_group[np.maximum(marks, 0)]
    envoi_start = is_new & (bcode == cat.bcode(codes.ENVOI)) & open_group
    dsn_in_group = np.bincount(group[envoi_start], minlength=int(group.max()) + 1)
    at = np.flatnonzero(cols.get_column("rcode").to_numpy() == cat.rcode(GROUP_DSN_COUNT))
    held = np.where(group[at] > 0, dsn_in_group[group[at]], 0)
    mismatched = (cols[at].with_columns(pl.Series("held", held, dtype=pl.Int64))
                  .filter(pl.col("value").cast(pl.Int64, strict=False).fill_null(-1)
                          != pl.col("held"))
                  .select("row", pl.lit(Reason.LOT_COUNT_MISMATCH).alias("own_reason"),
                          pl.format("the group's trailer declares {} DSN, the group holds {} "
                                    "(a DSN lost in transfer?)", "value", "held")
                          .alias("own_detail")))
    has_lot = np.unique(file_idx[bcode == b_lot])
    has_end = np.unique(file_idx[bcode == cat.bcode(LOT_END)])
    file_last = np.flatnonzero(np.append(file_idx[1:] != file_idx[:-1], True))
    cut = file_last[np.isin(file_idx[file_last], np.setdiff1d(has_lot, has_end))]
    truncated = cols[cut].select(
        "row", pl.lit(Reason.LOT_TRUNCATED).alias("own_reason"),
        pl.lit("the lot (S05.G51.00) has no trailer S95.G51.00: the file ends early (cut in "
               "transfer?)").alias("own_detail"))
    return pl.concat([mismatched, truncated], how="vertical_relaxed").sort("row")
