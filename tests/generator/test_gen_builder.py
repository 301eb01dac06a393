"""The builder writes norm-shaped lines: S90 counts every line, no empty value, apostrophes kept."""

from __future__ import annotations

import re
from datetime import date

from generator.builder import (
    Contract, ContractEnd, Declaration, Person, WorkStoppage, envoi_lines, monthly_pay,
    payment_for, render_envoi, with_totals,
)

LINE_RE = re.compile(r"^S\d{2}\.G\d{2}\.\d{2}\.\d{3},'.+'$")


def _decl() -> Declaration:
    c = Contract("C0001", date(2020, 3, 1), end=ContractEnd(date(2025, 5, 31), "059",
                                                            notice_type="90"),
                 stoppages=[WorkStoppage("06", date(2025, 5, 9), date(2025, 5, 20),
                                         accident_date=date(2025, 5, 9))])
    pay = monthly_pay(c, date(2025, 5, 1), "2100.00", "151.67")
    p = Person("1850775123456", "D'ARTAGNAN", "CHARLES", "15071985", contracts=[c],
               payments=[payment_for(date(2025, 5, 1), pay, "2100.00")])
    return Declaration("732829320", "00017", date(2025, 5, 1), people=[p],
                       company_name="L'ATELIER")


def test_every_line_is_well_formed_and_non_empty():
    text = render_envoi(_decl())
    lines = text.splitlines()
    assert all(LINE_RE.match(ln) for ln in lines), [ln for ln in lines if not LINE_RE.match(ln)]
    assert all(not ln.endswith(",''") for ln in lines)


def test_s90_counts_every_line_including_itself():
    lines = envoi_lines(_decl())
    assert lines[-2] == ("S90.G00.90.001", str(len(lines)))
    assert lines[-1] == ("S90.G00.90.002", "1")


def test_apostrophes_are_kept_verbatim():
    text = render_envoi(_decl())
    assert "S21.G00.30.002,'D'ARTAGNAN'" in text
    assert "S10.G00.01.003,'L'ATELIER'" in text


def test_contract_end_with_notice_and_accident_date():
    rubs = dict(envoi_lines(_decl()))
    assert rubs["S21.G00.62.002"] == "059" and rubs["S21.G00.63.001"] == "90"
    assert rubs["S21.G00.60.012"] == "09052025"
    assert rubs["S21.G00.11.017"] == "01"  # 01 = privée (the norm's list: 01, 02, 03)


def test_with_totals_recounts_after_edits():
    lines = envoi_lines(_decl())[:-2] + [("S21.G00.30.010", "LYON")]
    out = with_totals(lines)
    assert out[-2] == ("S90.G00.90.001", str(len(out)))
