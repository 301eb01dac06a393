"""A compact builder that writes real NEODeS DSN text (norme P25V01/P26V01 line format).

Why: tests, samples and benchmarks must feed the product *real* DSN lines, not hand-made
tables. A fixture reads like a payroll description (a person, a contract, a month of pay)
and `render_envoi` turns it into a complete envoi: S10 header, one S20 declaration, the S21
blocks in the norm's tree order, and an S90 total that counts every line (CT2025 CST-11).

Values follow the norm's formats: dates JJMMAAAA, quantities and amounts with exactly two
decimals, codes from the official value lists (see ../shared/domain/dsn_format.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable, Sequence

Number = Decimal | int | str


def fmt_date(d: date) -> str:
    """JJMMAAAA, the norm's date nature D."""
    return d.strftime("%d%m%Y")


def fmt_num(x: Number) -> str:
    """Exactly two decimals, '.' separator, optional leading '-' (CT2025 §4.4.7)."""
    return f"{Decimal(str(x)).quantize(Decimal('0.01'))}"


def month_bounds(month: date) -> tuple[date, date]:
    """First and last day of the civil month containing ``month``."""
    first = month.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


@dataclass
class Activity:
    """S21.G00.53: one measure of paid work (type 01) or unpaid absence (type 02)."""

    measure: Number
    activity_type: str = "01"
    unit: str | None = None  # 53.003; None ⇒ the contract's 40.011 applies


@dataclass
class Remuneration:
    """S21.G00.51: one pay element for one contract and one pay period."""

    period_start: date
    period_end: date
    contract_no: str
    pay_type: str  # 51.011, e.g. 001 brut non plafonné, 002 brut chômage, 003, 010
    amount: Number
    hours: Number | None = None  # 51.012, only for types 012, 013, 016-020, 025
    activities: list[Activity] = field(default_factory=list)


@dataclass
class Payment:
    """S21.G00.50 Versement individu: a payment date and its rémunérations."""

    paid_on: date
    net_taxable: Number
    net_paid: Number
    remunerations: list[Remuneration] = field(default_factory=list)
    payment_no: str | None = None  # 50.003, mandatory when several versements


@dataclass
class WorkStoppage:
    """S21.G00.60 Arrêt de travail."""

    motif: str  # 60.001: 01 maladie, 02 maternité, 06 accident du travail, 99 annulation…
    last_worked_day: date  # 60.002
    planned_end: date  # 60.003
    resumption: date | None = None  # 60.010
    accident_date: date | None = None  # 60.012, mandatory for 04, 05, 06


@dataclass
class Suspension:
    """S21.G00.65 Autre suspension de l'exécution du contrat."""

    motif: str  # 65.001: 501 congé non rémunéré, 632 congé parental d'éducation, 998 annulation…
    start: date
    end: date


@dataclass
class ContractEnd:
    """S21.G00.62 Fin du contrat."""

    end_date: date
    reason: str = "031"  # 62.002, 031 fin de CDD, 059 démission, 099 annulation…
    # S21.G00.63 Préavis, child (1,*) of 62 in the norm's tree. None keeps the historical
    # output of this builder (no 63 block); samples pass "90" (pas de clause de préavis)
    # or "01" (préavis effectué et payé) with its dates.
    notice_type: str | None = None  # 63.001
    notice_start: date | None = None  # 63.002
    notice_end: date | None = None  # 63.003


@dataclass
class IndividualChange:
    """S21.G00.31 Changements individu: the individual's OLD identifying data (dsn_format.md
    §1.5), declared under the current S21.G00.30 (e.g. an NIA replaced by the NIR)."""

    change_date: date  # 31.001 date de la modification
    old_nir: str | None = None  # 31.008 ancien NIR
    old_last_name: str | None = None  # 31.009
    old_first_names: str | None = None  # 31.010
    old_birth_date: str | None = None  # 31.011 JJMMAAAA


@dataclass
class ContractChange:
    """S21.G00.41 Changements contrat: the contract's OLD data, declared under the current
    S21.G00.40 (renumbering .014, new start date .021, transfer from establishment .012…)."""

    change_date: date  # 41.001 date de la modification
    old_unit: str | None = None  # 41.006
    old_quota: Number | None = None  # 41.007
    old_siret: str | None = None  # 41.012 SIRET ancien établissement d'affectation
    old_number: str | None = None  # 41.014 ancien numéro du contrat
    old_start: date | None = None  # 41.021 ancienne date de début
    old_ref_quota: Number | None = None  # 41.022


@dataclass
class Contract:
    """S21.G00.40 Contrat, with its child blocks 60, 62, 65 and the mandatory 71."""

    number: str
    start: date
    nature: str = "01"  # 40.007: 01 CDI, 02 CDD, 70 ESAT…
    unit: str = "10"  # 40.011: 10 heure, 12 journée, 20 forfait jour, 21 forfait heure, 99…
    ref_quota: Number = "151.67"  # 40.012, monthly reference of the category
    quota: Number = "151.67"  # 40.013, the contract's monthly quotité
    modality: str = "10"  # 40.014: 10 temps plein, 20 temps partiel, 99 non concerné
    status: str = "07"  # 40.002 statut conventionnel
    retirement_status: str = "04"  # 40.003 statut catégoriel retraite complémentaire
    pcs: str = "526A"  # 40.004
    job_title: str = "EMPLOYE"  # 40.006
    policy: str = "99"  # 40.008 dispositif de politique publique
    planned_end: date | None = None  # 40.010, mandatory for CDD (02) and ESAT (70)
    idcc: str = "1486"  # 40.017
    employment_status: str | None = None  # 40.026
    boeth: str | None = None  # 40.072 statut BOETH
    work_siret: str | None = None  # 40.019, defaults to the declaring establishment
    changes: list[ContractChange] = field(default_factory=list)  # 41, right after the 40
    stoppages: list[WorkStoppage] = field(default_factory=list)
    end: ContractEnd | None = None
    suspensions: list[Suspension] = field(default_factory=list)


@dataclass
class Person:
    """S21.G00.30 Individu with contracts and payments."""

    nir: str | None  # 13 characters, no key
    last_name: str
    first_names: str
    birth_date: str  # JJMMAAAA as declared (99 allowed for unknown day/month)
    birth_place: str = "PARIS"
    usage_name: str | None = None
    ntt: str | None = None
    employee_id: str | None = None  # 30.019 matricule
    changes: list[IndividualChange] = field(default_factory=list)  # 31, right after the 30
    contracts: list[Contract] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)


@dataclass
class Declaration:
    """One S20 DSN mensuelle for one establishment (SIRET) and one month (and fraction)."""

    siren: str
    nic: str
    month: date  # any day of the declared month
    people: list[Person] = field(default_factory=list)
    decl_type: str = "01"  # 01 normale, 02 sans individu, 03 A&R intégral, 05 A&R sans individu
    fraction: str = "11"
    order_no: str = "1"
    constitution_date: date | None = None  # 05.007, default: the 5th of the next month
    replaced_id: str | None = None  # 05.006 for types 03/05
    norm_version: str = "P25V01"
    test: bool = False  # S10.G00.00.005 = 01
    company_name: str = "SOCIETE EXEMPLE"
    idcc: str = "1486"
    apen: str = "6202A"
    nature: str = "01"

    @property
    def file_date(self) -> date:
        if self.constitution_date is not None:
            return self.constitution_date
        _, last = month_bounds(self.month)
        return last + timedelta(days=5)

    @property
    def declaration_id(self) -> str:
        """The id a later A&R puts in its S20.G00.05.006: .007 date + .004 order number."""
        return fmt_date(self.file_date) + self.order_no


Line = tuple[str, str]


def _lines(block: str, values: Iterable[tuple[str, object]]) -> list[Line]:
    """Rubrique lines of one block occurrence, skipping absent values (never emit '')."""
    return [(f"{block}.{num}", str(v)) for num, v in values if v is not None and v != ""]


def _header(d: Declaration) -> list[Line]:
    return (
        _lines("S10.G00.00", [("001", "CPFGEN"), ("002", "CPF-ALIMENTATION"), ("003", "1.0"),
                              ("005", "01" if d.test else "02"), ("006", d.norm_version),
                              ("007", "01"), ("008", "01")])
        + _lines("S10.G00.01", [("001", d.siren), ("002", d.nic), ("003", d.company_name),
                                ("004", "1 RUE DE LA PAIX"), ("005", "75002"), ("006", "PARIS")])
        + _lines("S10.G00.02", [("001", "01"), ("002", "SERVICE PAIE"),
                                ("004", "paie@exemple.invalid"), ("005", "0102030405")])
    )


def _declaration(d: Declaration) -> list[Line]:
    first, _ = month_bounds(d.month)
    return _lines("S20.G00.05", [
        ("001", d.nature), ("002", d.decl_type), ("003", d.fraction), ("004", d.order_no),
        ("005", fmt_date(first)), ("006", d.replaced_id), ("007", fmt_date(d.file_date)),
        ("008", "01"), ("010", "01"),
    ])


def _company(d: Declaration) -> list[Line]:
    return (
        _lines("S21.G00.06", [("001", d.siren), ("002", d.nic), ("003", d.apen),
                              ("004", "1 RUE DE LA PAIX"), ("005", "75002"), ("006", "PARIS")])
        + _lines("S21.G00.11", [("001", d.nic), ("002", d.apen), ("003", "1 RUE DE LA PAIX"),
                                ("004", "75002"), ("005", "PARIS"), ("017", "01"),
                                ("022", d.idcc)])
    )


def _contract(c: Contract, siret: str) -> list[Line]:
    out = _lines("S21.G00.40", [
        ("001", fmt_date(c.start)), ("002", c.status), ("003", c.retirement_status),
        ("004", c.pcs), ("006", c.job_title), ("007", c.nature), ("008", c.policy),
        ("009", c.number), ("010", fmt_date(c.planned_end) if c.planned_end else None),
        ("011", c.unit), ("012", fmt_num(c.ref_quota)), ("013", fmt_num(c.quota)),
        ("014", c.modality), ("016", "99"), ("017", c.idcc), ("018", "200"),
        ("019", c.work_siret or siret), ("020", "200"), ("024", "99"),
        ("026", c.employment_status), ("072", c.boeth),
    ])
    for ch in c.changes:  # block tree: 40 → 41 (0,*) before 45, 60, 62, 65, 70, 71
        out += _lines("S21.G00.41", [
            ("001", fmt_date(ch.change_date)), ("006", ch.old_unit),
            ("007", fmt_num(ch.old_quota) if ch.old_quota is not None else None),
            ("012", ch.old_siret), ("014", ch.old_number),
            ("021", fmt_date(ch.old_start) if ch.old_start else None),
            ("022", fmt_num(ch.old_ref_quota) if ch.old_ref_quota is not None else None),
        ])
    for s in c.stoppages:
        out += _lines("S21.G00.60", [
            ("001", s.motif), ("002", fmt_date(s.last_worked_day)),
            ("003", fmt_date(s.planned_end)), ("004", "02"),
            ("010", fmt_date(s.resumption) if s.resumption else None),
            ("011", "01" if s.resumption else None),
            ("012", fmt_date(s.accident_date) if s.accident_date else None),
        ])
    if c.end is not None:
        out += _lines("S21.G00.62", [("001", fmt_date(c.end.end_date)), ("002", c.end.reason)])
        if c.end.notice_type is not None:
            out += _lines("S21.G00.63", [
                ("001", c.end.notice_type),
                ("002", fmt_date(c.end.notice_start) if c.end.notice_start else None),
                ("003", fmt_date(c.end.notice_end) if c.end.notice_end else None),
            ])
    for s in c.suspensions:
        out += _lines("S21.G00.65", [("001", s.motif), ("002", fmt_date(s.start)),
                                     ("003", fmt_date(s.end))])
    out += _lines("S21.G00.71", [("002", "RUAA")])
    return out


def _payment(p: Payment) -> list[Line]:
    out = _lines("S21.G00.50", [("001", fmt_date(p.paid_on)), ("002", fmt_num(p.net_taxable)),
                                ("003", p.payment_no), ("004", fmt_num(p.net_paid))])
    for r in p.remunerations:
        out += _lines("S21.G00.51", [
            ("001", fmt_date(r.period_start)), ("002", fmt_date(r.period_end)),
            ("010", r.contract_no), ("011", r.pay_type),
            ("012", fmt_num(r.hours) if r.hours is not None else None),
            ("013", fmt_num(r.amount)),
        ])
        for a in r.activities:
            out += _lines("S21.G00.53", [("001", a.activity_type), ("002", fmt_num(a.measure)),
                                         ("003", a.unit)])
    return out


def _person(p: Person, siret: str) -> list[Line]:
    out = _lines("S21.G00.30", [
        ("001", p.nir), ("002", p.last_name), ("003", p.usage_name), ("004", p.first_names),
        ("006", p.birth_date), ("007", p.birth_place), ("008", "2 AVENUE DES TILLEULS"),
        ("009", "69001"), ("010", "LYON"), ("013", "01"), ("019", p.employee_id),
        ("020", p.ntt),
    ])
    for ch in p.changes:  # block tree: 30 → 31 (0,*) before 34, 40, 50
        out += _lines("S21.G00.31", [
            ("001", fmt_date(ch.change_date)), ("008", ch.old_nir), ("009", ch.old_last_name),
            ("010", ch.old_first_names), ("011", ch.old_birth_date),
        ])
    for c in p.contracts:
        out += _contract(c, siret)
    for pay in p.payments:
        out += _payment(pay)
    return out


def envoi_lines(d: Declaration) -> list[Line]:
    """All (rubrique, value) lines of one envoi holding declaration ``d``, S90 included."""
    body = _header(d) + _declaration(d) + _company(d)
    if d.decl_type not in ("02", "05"):
        for p in d.people:
            body += _person(p, d.siren + d.nic)
    total = len(body) + 2  # S90 counts every rubrique of the envoi, its own two included
    return body + [("S90.G00.90.001", str(total)), ("S90.G00.90.002", "1")]


def with_totals(lines: Sequence[Line]) -> list[Line]:
    """Replace (or add) the S90 block so that its count matches ``lines`` again.

    Why: samples edit an envoi's lines after building it (deliberate defects, inserted
    blocks); the S90 total must still count every line actually written.
    """
    body = [ln for ln in lines if not ln[0].startswith("S90.")]
    n_decl = sum(1 for rub, _ in body if rub == "S20.G00.05.001")
    return body + [("S90.G00.90.001", str(len(body) + 2)), ("S90.G00.90.002", str(n_decl))]


def render_lines(lines: Sequence[Line], newline: str = "\n") -> str:
    """The flat text of DSN lines, ``Sxx.Gyy.zz.aaa,'value'`` one per record."""
    return "".join(f"{rub},'{val}'{newline}" for rub, val in lines)


def render_envoi(d: Declaration, newline: str = "\n") -> str:
    """Flat NEODeS text of one envoi (M2M deposit: exactly one S20 per envoi)."""
    return render_lines(envoi_lines(d), newline)


def write_envoi(d: Declaration, path, encoding: str = "latin-1", newline: str = "\n") -> None:
    """Write one envoi to ``path`` in the given encoding (the norm's is ISO-8859-1)."""
    with open(path, "wb") as fh:
        fh.write(render_envoi(d, newline).encode(encoding))


# ---------------------------------------------------------------------------------------
# Shortcuts for the common case: one month of ordinary pay for one contract.


def monthly_pay(contract: Contract, month: date, gross: Number, worked: Number | None,
                *, unit: str | None = None, unpaid_absence: Number | None = None,
                period: tuple[date, date] | None = None) -> list[Remuneration]:
    """The four mandatory views of one month's pay (51 types 001/002/003/010) + activity.

    ``worked`` is the paid time of the month in the contract's unit (hours, days); the
    Activité blocks sit under the type 002 rémunération, as the norm requires.
    """
    start, end = period or month_bounds(month)
    start = max(start, contract.start)
    acts: list[Activity] = []
    if worked is not None:
        acts.append(Activity(worked, "01", unit))
    if unpaid_absence is not None:
        acts.append(Activity(unpaid_absence, "02", unit))
    return [
        Remuneration(start, end, contract.number, "001", gross),
        Remuneration(start, end, contract.number, "002", gross, activities=acts),
        Remuneration(start, end, contract.number, "003", gross),
        Remuneration(start, end, contract.number, "010", gross),
    ]


def payment_for(month: date, remunerations: list[Remuneration], gross: Number) -> Payment:
    """A Versement dated the last day of the month, net ≈ 78 % of gross (illustrative)."""
    _, last = month_bounds(month)
    net = (Decimal(str(gross)) * Decimal("0.78")).quantize(Decimal("0.01"))
    return Payment(paid_on=last, net_taxable=net, net_paid=net, remunerations=remunerations)
