"""Dated legal parameters: ONE resolver, ``params_for_year(year) -> YearParams``.

The numbers live in ``pipeline/params/*.yaml`` (OpenFisca style: one leaf per parameter, each
value with its start date and legal reference). The value in force for activity year N is the
one with the latest start date on or before 1 January N; the SMIC horaire is resolved month by
month (value in force on the 1st of each month, ``smic_basis = monthly_time_weighted``).
Formulas in ``pipeline/`` read a ``YearParams`` and never hold a legal number themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PARAMS_DIR = Path(__file__).resolve().parent / "params"


@lru_cache(maxsize=1)
def load_tree(params_dir: str = str(PARAMS_DIR)) -> dict[str, dict[str, Any]]:
    """Every leaf of every YAML file: name -> {description, unit, values: [(start, value, ref)]}."""
    tree: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(params_dir).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, leaf in doc.items():
            if name in tree:
                raise ValueError(f"parameter {name!r} defined twice ({path.name})")
            values = []
            for start, v in leaf["values"].items():
                start = start if isinstance(start, date) else date.fromisoformat(str(start))
                values.append((start, v["value"], v.get("reference", "")))
            values.sort(key=lambda t: t[0])
            tree[name] = {"description": leaf.get("description", ""), "unit": leaf.get("unit", ""),
                          "file": path.name, "values": values}
    return tree


def value_at(name: str, instant: date) -> Any:
    """The value of parameter ``name`` in force at ``instant`` (None before its first date)."""
    found = None
    for start, value, _ref in load_tree()[name]["values"]:
        if start <= instant:
            found = value
    return found


def reference_at(name: str, instant: date) -> str:
    found = ""
    for start, _value, ref in load_tree()[name]["values"]:
        if start <= instant:
            found = ref
    return found


def _codes(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in (v or ()))


@dataclass(frozen=True)
class YearParams:
    """Every parameter value in force for one activity year (money in cents, quantities in
    hundredths unless stated)."""

    year: int
    era: str  # "hours" (2015-2018) | "euros"
    # amounts and ceilings (euro era; None in the hour era)
    standard_amount_cents: int | None
    standard_ceiling_cents: int | None
    low_qualified_amount_cents: int | None
    low_qualified_ceiling_cents: int | None
    boeth_supplement_cents: int | None
    boeth_ceiling_cents: int | None
    esat_amount_cents: int | None
    esat_ceiling_cents: int | None
    hour_to_euro_rate_cents: int | None
    # hour era (None in the euro era)
    hour_rate_first_tier: int | None
    hour_first_tier_cap: int | None
    hour_rate_second_tier: int | None
    hour_ceiling: int | None
    # ratio
    full_amount_threshold: tuple[int, int] | None  # exact fraction; None = prorate any time below 1
    threshold_ratio_decimals: int | None  # Decision: ratio rounded half-up to this many decimals
    # before the threshold test (None = exact ratio)
    rounding: str  # "ceil_cent" | "ceil_hour"
    legal_annual_hours_h: int
    forfait_max_days_h: int
    smic_hours_multiplier: int
    smic_monthly_cents: tuple[int, ...]  # 12 values: SMIC horaire in force on the 1st of each month
    smic_basis: str
    # absences
    qualifying_stoppage_motifs: tuple[str, ...]
    qualifying_suspension_motifs: tuple[str, ...]
    commuting_accident_motif: str
    count_commuting_accident: bool
    sans_notion_absence_counted: bool
    stoppage_cancel_motif: str
    suspension_cancel_motif: str
    contract_end_cancel_reason: str
    # units and scope
    hour_units: tuple[str, ...]
    day_units: tuple[str, ...]
    forfait_day_units: tuple[str, ...]
    sans_notion_units: tuple[str, ...]
    remuneration_pay_type: str
    activity_pay_type: str
    worked_activity_type: str
    public_contract_natures: tuple[str, ...]
    trainee_mandate_natures: tuple[str, ...]
    public_employment_statuses: tuple[str, ...]
    esat_contract_nature: str
    min_age: int
    min_age_apprentice: int
    apprentice_policy_schemes: tuple[str, ...]
    # decisions
    low_qualified_boeth_stacked: bool
    esat_prorated: bool
    prorate_low_qualified_and_boeth: bool
    pay_period_attribution: str
    other_unit_reference: str
    absence_cap: str
    hour_era_forfait_jours_basis: str
    min_age_reference: str

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists) for manifests and explanations."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @property
    def version(self) -> str:
        """Stable hash of the resolved values (same values => same version, any machine)."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return "p-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def threshold_test_fraction(self) -> tuple[int, int] | None:
        """(t_num, t_den): ratio reaches the full-amount threshold iff ratio >= t_num / t_den.

        With the Decision ``half_threshold_ratio_decimals = d`` the test is
        round_half_up(ratio, d) >= a/b. With x = ratio·10^d: round_half_up(ratio, d) =
        floor(x + 1/2) / 10^d, and floor(x + 1/2) >= a·10^d/b  <=>  x + 1/2 >= c with
        c = ceil(a·10^d / b) (an integer)  <=>  ratio >= (2c - 1) / (2·10^d).
        d = 4, a/b = 1/2: c = 5 000, ratio >= 9 999 / 20 000 = 0.49995."""
        if self.full_amount_threshold is None:
            return None
        a, b = self.full_amount_threshold
        d = self.threshold_ratio_decimals
        if d is None:
            return a, b
        c = -(-a * 10 ** d // b)
        return 2 * c - 1, 2 * 10 ** d

    @property
    def worked_units(self) -> tuple[str, ...]:
        return self.hour_units + self.day_units

    @property
    def qualifying_stoppages(self) -> tuple[str, ...]:
        extra = (self.commuting_accident_motif,) if self.count_commuting_accident else ()
        return self.qualifying_stoppage_motifs + extra

    @property
    def smic_reference_cents_x12(self) -> int:
        """12 x (Σ over the 12 months of 2080/12 x SMIC on the 1st) = 2080 x Σ SMIC_m (cents):
        an integer, so the remuneration route stays exact."""
        return self.smic_hours_multiplier * sum(self.smic_monthly_cents)

    def references(self) -> dict[str, str]:
        """Legal reference of each YAML leaf in force for the year (for explanations)."""
        jan1 = date(self.year, 1, 1)
        return {name: reference_at(name, jan1) for name in load_tree()}


MIN_YEAR = 2015


@lru_cache(maxsize=64)
def params_for_year(year: int) -> YearParams:
    """The parameters in force for activity year ``year`` (2015 onwards)."""
    if year < MIN_YEAR:
        raise ValueError(f"no parameters before activity year {MIN_YEAR} (got {year})")
    jan1 = date(year, 1, 1)
    v = lambda name: value_at(name, jan1)  # noqa: E731
    smic = tuple(int(value_at("smic_horaire", date(year, m, 1))) for m in range(1, 13))
    thr = v("full_amount_threshold")
    return YearParams(
        year=year,
        era=str(v("era")),
        standard_amount_cents=v("standard_amount"),
        standard_ceiling_cents=v("standard_ceiling"),
        low_qualified_amount_cents=v("low_qualified_amount"),
        low_qualified_ceiling_cents=v("low_qualified_ceiling"),
        boeth_supplement_cents=v("boeth_supplement"),
        boeth_ceiling_cents=v("boeth_ceiling"),
        esat_amount_cents=v("esat_amount"),
        esat_ceiling_cents=v("esat_ceiling"),
        hour_to_euro_rate_cents=value_at("hour_to_euro_rate", date(2019, 1, 1)),
        hour_rate_first_tier=v("hour_rate_first_tier"),
        hour_first_tier_cap=v("hour_first_tier_cap"),
        hour_rate_second_tier=v("hour_rate_second_tier"),
        hour_ceiling=v("hour_ceiling"),
        full_amount_threshold=tuple(int(x) for x in thr) if thr else None,
        threshold_ratio_decimals=(None if v("half_threshold_ratio_decimals") is None
                                  else int(v("half_threshold_ratio_decimals"))),
        rounding=str(v("rounding")),
        legal_annual_hours_h=int(v("legal_annual_hours")),
        forfait_max_days_h=int(v("forfait_max_days")),
        smic_hours_multiplier=int(v("smic_hours_multiplier")),
        smic_monthly_cents=smic,
        smic_basis=str(v("smic_basis")),
        qualifying_stoppage_motifs=_codes(v("qualifying_stoppage_motifs")),
        qualifying_suspension_motifs=_codes(v("qualifying_suspension_motifs")),
        commuting_accident_motif=str(v("commuting_accident_motif")),
        count_commuting_accident=bool(v("count_commuting_accident")),
        sans_notion_absence_counted=bool(v("sans_notion_absence_counted")),
        stoppage_cancel_motif=str(v("stoppage_cancel_motif")),
        suspension_cancel_motif=str(v("suspension_cancel_motif")),
        contract_end_cancel_reason=str(v("contract_end_cancel_reason")),
        hour_units=_codes(v("hour_units")),
        day_units=_codes(v("day_units")),
        forfait_day_units=_codes(v("forfait_day_units")),
        sans_notion_units=_codes(v("sans_notion_units")),
        remuneration_pay_type=str(v("remuneration_pay_type")),
        activity_pay_type=str(v("activity_pay_type")),
        worked_activity_type=str(v("worked_activity_type")),
        public_contract_natures=_codes(v("public_contract_natures")),
        trainee_mandate_natures=_codes(v("trainee_mandate_natures")),
        public_employment_statuses=_codes(v("public_employment_statuses")),
        esat_contract_nature=str(v("esat_contract_nature")),
        min_age=int(v("min_age")),
        min_age_apprentice=int(v("min_age_apprentice")),
        apprentice_policy_schemes=_codes(v("apprentice_policy_schemes")),
        low_qualified_boeth_stacked=bool(v("low_qualified_boeth_stacked")),
        esat_prorated=bool(v("esat_prorated")),
        prorate_low_qualified_and_boeth=bool(v("prorate_low_qualified_and_boeth")),
        pay_period_attribution=str(v("pay_period_attribution")),
        other_unit_reference=str(v("other_unit_reference")),
        absence_cap=str(v("absence_cap")),
        hour_era_forfait_jours_basis=str(v("hour_era_forfait_jours_basis")),
        min_age_reference=str(v("min_age_reference")),
    )


def hours_to_euro_cents(hours: int) -> int:
    """Conversion of an hour balance on 1 January 2019 (décret 2018-1153: 15 €/h)."""
    return int(hours) * int(value_at("hour_to_euro_rate", date(2019, 1, 1)))
