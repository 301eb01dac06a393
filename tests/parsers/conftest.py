"""Helpers to write DSN test files as readable text (what a payroll person would recognise).

``dsn.envoi(dsn.declaration(body))`` wraps S21 lines into a full envoi: S10 header, S20
declaration, S90 totals computed like the norm does (every line from S10.G00.00.001 to S90
inclusive; number of S20).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

SAMPLE = Path("/work/shared/dsn_samples/open-neodes_sample_dsn_P25V01.dsn")

# One employee, one contract (CDI full time 151.67 h), one month of pay with its activity.
EMPLOYEE = """
S21.G00.30.001,'1850775123456'
S21.G00.30.002,'DUPONT'
S21.G00.30.004,'JEAN'
S21.G00.30.006,'15071985'
S21.G00.30.019,'M001'
S21.G00.40.001,'01032020'
S21.G00.40.002,'04'
S21.G00.40.007,'01'
S21.G00.40.008,'99'
S21.G00.40.009,'C0001'
S21.G00.40.011,'10'
S21.G00.40.012,'151.67'
S21.G00.40.013,'151.67'
S21.G00.40.014,'10'
S21.G00.40.017,'1486'
S21.G00.40.026,'99'
S21.G00.50.001,'31012025'
S21.G00.50.002,'2000.00'
S21.G00.50.004,'1950.00'
S21.G00.51.001,'01012025'
S21.G00.51.002,'31012025'
S21.G00.51.010,'C0001'
S21.G00.51.011,'001'
S21.G00.51.013,'2500.00'
S21.G00.51.001,'01012025'
S21.G00.51.002,'31012025'
S21.G00.51.010,'C0001'
S21.G00.51.011,'002'
S21.G00.51.013,'2500.00'
S21.G00.53.001,'01'
S21.G00.53.002,'151.67'
S21.G00.53.003,'10'
"""


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in textwrap.dedent(text).strip().splitlines() if ln.strip()]


def employer(siren: str = "123456782", nic: str = "00012") -> str:
    return f"""
S21.G00.06.001,'{siren}'
S21.G00.06.002,'00012'
S21.G00.11.001,'{nic}'
S21.G00.11.022,'1486'
"""


def declaration(body: str = EMPLOYEE, *, nature: str = "01", type_: str = "01",
                fraction: str = "11", order: str = "1", month: str = "01012025",
                built: str = "05022025", replaced: str | None = None,
                siren: str = "123456782", nic: str = "00012") -> str:
    head = [
        f"S20.G00.05.001,'{nature}'", f"S20.G00.05.002,'{type_}'",
        f"S20.G00.05.003,'{fraction}'", f"S20.G00.05.004,'{order}'",
        f"S20.G00.05.005,'{month}'",
    ]
    if replaced:
        head.append(f"S20.G00.05.006,'{replaced}'")
    head += [f"S20.G00.05.007,'{built}'", "S20.G00.05.008,'01'", "S20.G00.05.010,'01'"]
    return "\n".join(head + _lines(employer(siren, nic)) + _lines(body))


def envoi(*decls: str, test: bool = False, version: str = "P25V01",
          s90_lines: int | None = None, s90_decls: int | None = None) -> str:
    header = [
        "S10.G00.00.001,'PAIE-EXPERT'", "S10.G00.00.002,'EDITEUR'", "S10.G00.00.003,'1.0'",
        f"S10.G00.00.005,'{'01' if test else '02'}'", f"S10.G00.00.006,'{version}'",
        "S10.G00.00.007,'01'", "S10.G00.00.008,'01'",
        "S10.G00.01.001,'123456782'", "S10.G00.01.002,'00012'", "S10.G00.01.003,'CABINET PAIE'",
        "S10.G00.02.002,'MME MARTIN'",
    ]
    body = header + [ln for d in decls for ln in _lines(d)]
    total = len(body) + 2 if s90_lines is None else s90_lines
    n_decl = len(decls) if s90_decls is None else s90_decls
    return "\n".join(body + [f"S90.G00.90.001,'{total}'", f"S90.G00.90.002,'{n_decl}'"]) + "\n"


def write(tmp: Path, name: str, text: str, encoding: str = "latin-1", newline: str = "\n") -> Path:
    path = tmp / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


@pytest.fixture
def dsn() -> SimpleNamespace:
    return SimpleNamespace(envoi=envoi, declaration=declaration, employer=employer,
                           write=write, EMPLOYEE=EMPLOYEE, SAMPLE=SAMPLE, lines=_lines)
