"""The result of parsing one or several input files, before it is written to the lake."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from parsers.codes import QUARANTINED_SCOPES, Scope
from parsers.lake_schema import TABLES, empty_frame


@dataclass
class ParsedFile:
    """Typed tables of one file — or of a batch of files parsed together (same shape).

    ``tables`` holds every table of ``lake_schema.TABLES`` (``files`` has one row per input
    file with its line accounting: ``lines_read == lines_parsed + lines_quarantined``).
    """

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in TABLES:
            self.tables.setdefault(name, empty_frame(name))

    def __getitem__(self, table: str) -> pl.DataFrame:
        return self.tables[table]

    @property
    def files(self) -> pl.DataFrame:
        return self.tables["files"]

    def _sum(self, column: str) -> int:
        return int(self.files[column].sum() or 0)

    @property
    def lines_read(self) -> int:
        return self._sum("lines_read")

    @property
    def lines_parsed(self) -> int:
        return self._sum("lines_parsed")

    @property
    def lines_quarantined(self) -> int:
        return self._sum("lines_quarantined")

    @property
    def warnings(self) -> int:
        return self._sum("warnings")

    @property
    def declarations(self) -> int:
        return self.tables["declarations"].height

    @property
    def declarations_rejected(self) -> int:
        return int(self.tables["declarations"]["rejected"].sum() or 0)

    def quarantine_by_reason(self, include_warnings: bool = False) -> dict[str, int]:
        """Quarantined lines per reason (warnings only when asked)."""
        q = self.tables["quarantine"]
        scopes = list(QUARANTINED_SCOPES) + ([Scope.WARNING] if include_warnings else [])
        counts = q.filter(pl.col("scope").is_in(scopes)).group_by("reason").len()
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list()))


def concat_parsed(parts: list[ParsedFile]) -> ParsedFile:
    """Stack several ParsedFile (e.g. flat and XML halves of one batch)."""
    if len(parts) == 1:
        return parts[0]
    return ParsedFile({name: pl.concat([p.tables[name] for p in parts], how="vertical")
                       for name in TABLES})
