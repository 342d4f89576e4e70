"""A deterministic, realistic run of the trial NFH-MSC-CMV-2014 as import lines.

:func:`generate_trial` simulates what the sites of NCT02083731 would have entered
from January 2014 to the end of follow-up in December 2016, as plain dicts in the
JSON Lines import format of SPEC section 6, in the order the sites entered them:

- screening at the sites of the protocol (codes ``<SITE>-<NNN>`` numbered per site
  in screening order), with 10-15 % screen failures that fail a criterion of SPEC
  section 2 and are never enrolled, and one or two historical enrollments that
  fail a criterion and carry a ``deviation`` (flag ``eligibility_deviation``);
- enrollment a few days after screening, course 1 of MSC 0-3 days later at about
  1.0 x 10^6 cells/kg (a few doses outside +/-10 %: ``dose_deviation``) and a
  second course on days 15-21 when complete remission was not reached by day 14
  (SPEC section 2, treatment);
- CMV DNA results of the site's assay with log-linear decline to below the LLOQ
  for responders, non-responders, a few recurrences and rare results above the
  ULOQ; CMV disease assessments for the participants screened with
  ``refractory_cmv = disease`` (SPEC section 2, complete remission);
- adverse events of every category with CTCAE grades 1-5, ICH E2A seriousness,
  WHO-UMC causality and follow-ups, one serious AE or more reported late
  (``late_sae_report``); withdrawals and deaths, each death with its grade 5 AE;
- corrections and voids of earlier lines (SPEC section 5) and results entered
  weeks after later samples.

Every line carries a unique client ``id``, the ``site``, a site staff ``user`` and
``entered_at``: the simulated time the site entered it (China Standard Time),
kept as provenance by the import and used by the late-SAE rule (SPEC section 6).
The lines are sorted by that time; a participant's screening comes first, an
enrollment before its infusions, an AE report before its updates and a target
before its correction or void.

The generator only uses ``random.Random(seed)``: the same arguments give the same
lines.  :func:`write_jsonl` writes them to a file or stream.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ledger.domain.events import CATEGORIES
from ledger.domain.protocol import Protocol, Remission, load_protocol
from ledger.domain.rules.remission import Sample, virological_cr_date
from ledger.domain.rules.treatment import day_date, study_day

__all__ = ["generate_trial", "write_jsonl"]

STUDY_START = dt.date(2014, 1, 6)
"""First possible screening date (study start January 2014, registry record)."""
ACCRUAL_END = dt.date(2015, 11, 30)
"""Last possible screening date: about two years of accrual."""
LAST_EFFECTIVE = dt.date(2016, 12, 31)
"""No clinical (effective) date after this day: end of the study's follow-up."""
TIME_ZONE = "+08:00"
"""Offset of every site clock (China Standard Time) in ``aware_at``/``entered_at``."""

_DAY = 1440  # minutes
_WORK_START = 8 * 60 + 30
_WORK_END = 17 * 60 + 30


@dataclass(frozen=True, slots=True)
class Assay:
    """A CMV DNA assay as a site reports it (SPEC section 2, CMV DNA results).

    ``uloq_iu_ml`` is not a field of the ledger: it decides when the simulated
    load is reported ``above_uloq``.
    """

    name: str
    specimen: str
    lloq_iu_ml: float
    uloq_iu_ml: float


COBAS = Assay("COBAS AmpliPrep/COBAS TaqMan CMV Test", "plasma", 137.0, 9.1e6)
ABBOTT = Assay("Abbott RealTime CMV", "plasma", 31.2, 1.56e8)
ARTUS = Assay("artus CMV QS-RGQ", "whole_blood", 150.0, 1.0e7)


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """How a site takes part: share of screenings, start, staff and CMV assay."""

    weight: float
    opens_after_days: int
    users: tuple[str, ...]  # research coordinators first, the data manager last
    assay: Assay


SITE_PROFILES: dict[str, SiteProfile] = {
    "NFH": SiteProfile(32, 0, ("nfh.chen", "nfh.lin", "nfh.liu"), COBAS),
    "AMMS": SiteProfile(14, 55, ("amms.wang", "amms.zhang"), ABBOTT),
    "PKUPH": SiteProfile(14, 40, ("pkuph.huang", "pkuph.xu"), ARTUS),
    "SYSU": SiteProfile(10, 70, ("sysu.li", "sysu.zhou"), COBAS),
    "GDGH": SiteProfile(9, 95, ("gdgh.wu", "gdgh.zheng"), ABBOTT),
    "GZGH": SiteProfile(8, 120, ("gzgh.sun", "gzgh.ma"), ARTUS),
    "SYSU3": SiteProfile(7, 150, ("sysu3.he", "sysu3.guo"), COBAS),
    "ZSH": SiteProfile(6, 210, ("zsh.yang", "zsh.zhu"), ABBOTT),
}
"""The eight sites of SPEC section 1; a protocol with other site codes gets
:func:`_default_profile` for them."""

# CMV sampling days (day 1 = first infusion): twice weekly during the first
# month, weekly to day 56, then spaced out to the end of the follow-up window.
_SCHEDULE_EARLY = (1, 4, 8, 11, 14, 18, 21, 25, 28, 35, 42, 49, 56, 70, 84)
_SCHEDULE_LATE = (112, 140, 180, 270)

_ORGANS = (
    ("gastrointestinal tract", 45),
    ("lung", 33),
    ("liver", 8),
    ("retina", 9),
    ("central nervous system", 5),
)

# Adverse events (SPEC section 2): category -> (weight among AEs, onset window in
# study days, grade 1-4 weights, usual duration in days, terms).
_AE_CATEGORY_WEIGHTS = {
    "gvhd_acute": 18,
    "gvhd_chronic": 8,
    "underlying_disease_relapse": 5,
    "cardiac_toxicity": 4,
    "hepatic_toxicity": 12,
    "renal_toxicity": 7,
    "secondary_malignancy": 1,
    "infusion_reaction": 8,
    "infection": 25,
    "other": 14,
}
_AE_ONSET = {
    "gvhd_acute": (5, 100),
    "gvhd_chronic": (100, 365),
    "underlying_disease_relapse": (60, 365),
    "cardiac_toxicity": (2, 60),
    "hepatic_toxicity": (3, 90),
    "renal_toxicity": (3, 120),
    "secondary_malignancy": (120, 365),
    "infusion_reaction": (1, 1),
    "infection": (3, 365),
    "other": (2, 200),
}
_AE_GRADES = {
    "gvhd_acute": (25, 35, 28, 12),
    "gvhd_chronic": (35, 40, 20, 5),
    "underlying_disease_relapse": (0, 0, 30, 70),
    "cardiac_toxicity": (40, 35, 20, 5),
    "hepatic_toxicity": (40, 30, 22, 8),
    "renal_toxicity": (45, 35, 15, 5),
    "secondary_malignancy": (0, 10, 55, 35),
    "infusion_reaction": (60, 32, 7, 1),
    "infection": (10, 35, 40, 15),
    "other": (35, 35, 22, 8),
}
_AE_DURATION = {
    "gvhd_acute": (14, 60),
    "gvhd_chronic": (60, 200),
    "underlying_disease_relapse": (0, 0),
    "cardiac_toxicity": (2, 30),
    "hepatic_toxicity": (7, 40),
    "renal_toxicity": (7, 40),
    "secondary_malignancy": (0, 0),
    "infusion_reaction": (0, 1),
    "infection": (7, 30),
    "other": (3, 30),
}
_AE_TERMS = {
    "gvhd_acute": (
        "Acute GVHD of skin (maculopapular rash)",
        "Acute GVHD of upper gastrointestinal tract",
        "Acute GVHD of lower gastrointestinal tract (diarrhoea)",
        "Acute GVHD of liver (hyperbilirubinaemia)",
    ),
    "gvhd_chronic": (
        "Chronic GVHD of oral mucosa",
        "Chronic GVHD of skin (lichen planus-like)",
        "Chronic GVHD of eyes (keratoconjunctivitis sicca)",
        "Chronic GVHD of liver",
        "Bronchiolitis obliterans syndrome",
    ),
    "underlying_disease_relapse": (
        "Relapse of acute myeloid leukaemia",
        "Relapse of acute lymphoblastic leukaemia",
        "Relapse of myelodysplastic syndrome",
        "Molecular relapse of chronic myeloid leukaemia",
        "Relapse of non-Hodgkin lymphoma",
    ),
    "cardiac_toxicity": (
        "Sinus tachycardia",
        "Atrial fibrillation",
        "Left ventricular systolic dysfunction",
        "Pericardial effusion",
        "Electrocardiogram QT corrected interval prolonged",
    ),
    "hepatic_toxicity": (
        "Alanine aminotransferase increased",
        "Aspartate aminotransferase increased",
        "Blood bilirubin increased",
        "Gamma-glutamyltransferase increased",
        "Drug-induced liver injury",
    ),
    "renal_toxicity": (
        "Creatinine increased",
        "Acute kidney injury",
        "Proteinuria",
        "Calcineurin inhibitor nephrotoxicity",
    ),
    "secondary_malignancy": (
        "EBV-associated post-transplant lymphoproliferative disorder",
        "Squamous cell carcinoma of skin",
        "Papillary thyroid carcinoma",
        "Donor cell-derived myelodysplastic syndrome",
    ),
    "infusion_reaction": (
        "Fever during MSC infusion",
        "Chills and rigors after MSC infusion",
        "Urticaria during MSC infusion",
        "Transient hypotension during MSC infusion",
        "Dyspnoea during MSC infusion",
    ),
    "infection": (
        "Bacterial pneumonia",
        "Invasive pulmonary aspergillosis",
        "BK virus haemorrhagic cystitis",
        "Klebsiella pneumoniae bloodstream infection",
        "EBV reactivation",
        "Herpes zoster",
        "Catheter-related bloodstream infection",
        "Pneumocystis jirovecii pneumonia",
    ),
    "other": (
        "Thrombocytopenia",
        "Neutrophil count decreased",
        "Anaemia",
        "Nausea",
        "Fatigue",
        "Headache",
        "Hyperglycaemia",
        "Transplant-associated thrombotic microangiopathy",
    ),
}
_CAUSALITY = {
    "gvhd_acute": (("possible", "unlikely", "unassessable"), (3, 6, 1)),
    "gvhd_chronic": (("possible", "unlikely"), (2, 8)),
    "underlying_disease_relapse": (("unlikely", "unassessable"), (8, 2)),
    "cardiac_toxicity": (("possible", "unlikely", "conditional"), (4, 5, 1)),
    "hepatic_toxicity": (("possible", "unlikely", "conditional"), (4, 5, 1)),
    "renal_toxicity": (("possible", "unlikely"), (3, 7)),
    "secondary_malignancy": (("unlikely", "unassessable"), (6, 4)),
    "infusion_reaction": (("certain", "probable", "possible"), (2, 5, 3)),
    "infection": (("possible", "unlikely"), (2, 8)),
    "other": (("possible", "unlikely", "unassessable"), (3, 6, 1)),
}
# Fatal AEs (category, term): in non-responders, and in participants who
# reached remission but died later of another complication.
_FATAL_NONRESPONDER = (
    ("infection", "Progressive CMV pneumonia with respiratory failure"),
    ("infection", "Septic shock (Klebsiella pneumoniae)"),
    ("infection", "Invasive pulmonary aspergillosis with respiratory failure"),
)
_FATAL_RESPONDER = (
    ("underlying_disease_relapse", "Relapse of acute myeloid leukaemia, refractory to salvage"),
    ("gvhd_acute", "Steroid-refractory acute GVHD of lower gastrointestinal tract"),
    ("infection", "Septic shock (Pseudomonas aeruginosa)"),
    ("other", "Transplant-associated thrombotic microangiopathy with multi-organ failure"),
)
_WITHDRAWAL_REASONS = (
    "Withdrew consent",
    "Transferred to a non-participating hospital for continued care",
    "Moved back to home province; follow-up visits no longer possible",
    "Investigator decision: started off-protocol CMV-specific T-cell therapy",
)
_VOID_AE_REASONS = (
    "Entered in error: the symptom predates enrollment and is in the medical history",
    "Entered in error in this participant's record; belongs to another patient of the ward",
)
_SCREEN_FAILURES = (
    "vitals",
    "not_refractory",
    "age_high",
    "excluded",
    "age_low",
    "consent_late",
    "vitals",
    "not_refractory",
)


@dataclass(slots=True)
class _Plan:
    """What will happen to one enrolled participant, decided before simulation."""

    response: str = "late"  # early | late | none | not_infused
    fate: str | None = None  # died | withdrew
    fate_day: int = 0  # study day of death or withdrawal
    fatal: tuple[str, str] | None = None  # (category, term) of the fatal AE
    fatal_worsening: bool = False  # the fatal AE first reported as grade 4
    disease: bool = False
    deviation: str | None = None  # age | hr
    flags: set[str] = field(default_factory=set)
    forced_aes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Candidate:
    """One screened person: code, site, screening date and, if enrolled, a plan."""

    code: str
    site: str
    screened: int  # date ordinal
    failure: str | None = None
    disease: bool = False
    plan: _Plan | None = None


@dataclass(slots=True)
class _Sample:
    day: int
    result: str
    log_value: float | None = None


@dataclass(slots=True)
class _AdverseEvent:
    """One AE as first reported, before the site gives it its number."""

    onset: int  # study day
    category: str
    tag: str | None  # the planned special case it stands for, if any
    term: str
    grade: int
    criteria: list[str]
    causality: str
    aware: int  # minutes, local clock
    entry: int
    after: tuple[int, ...]  # lines it must follow (the infusions)


class _Stream:
    """One participant's lines with simulated entry times (minutes, local clock)."""

    __slots__ = ("code", "entries", "lines", "site", "users")

    def __init__(self, code: str, site: str, users: tuple[str, ...]) -> None:
        self.code = code
        self.site = site
        self.users = users
        self.lines: list[dict[str, Any]] = []
        self.entries: list[int] = []

    def add(
        self,
        suffix: str,
        kind: str,
        fields: dict[str, Any],
        entry: int,
        user: str,
        after: Sequence[int] = (),
    ) -> int:
        """Append a line entered at ``entry`` but after the lines ``after`` and screening."""
        for index in (0, *after):
            if index < len(self.entries) and entry <= self.entries[index]:
                entry = self.entries[index] + 1
        line = {"type": kind, "id": f"{self.code}-{suffix}", "site": self.site, "user": user}
        line.update(fields)
        self.lines.append(line)
        self.entries.append(entry)
        return len(self.lines) - 1


def _default_profile(index: int, code: str) -> SiteProfile:
    """A site that SITE_PROFILES does not know (another study's protocol file)."""
    low = code.lower()
    return SiteProfile(
        30 if index == 0 else 10,
        0 if index == 0 else 30 * index,
        (f"{low}.crc", f"{low}.dm"),
        COBAS,
    )


def _quota(n: int, rate: float, minimum: int) -> int:
    """How many of ``n`` participants get a feature: ``rate`` of them, at least
    ``minimum`` once the trial has 20 participants or more."""
    wanted = round(n * rate)
    if n >= 20:
        wanted = max(wanted, minimum)
    return min(wanted, n)


# Any calendar date: the simulator plans in study days and places them on a calendar
# from here to ask the domain's own remission rule.
_PLAN_DAY1 = dt.date(2000, 1, 1)


def _virological_cr_day(samples: Iterable[tuple[int, str]], rules: Remission) -> int | None:
    """Study day of virological complete remission (SPEC section 2), or None.

    ``samples`` are (study day, result) in sample-date order; the rule is
    :func:`ledger.domain.rules.remission.virological_cr_date`.
    """
    placed = [
        Sample(day_date(_PLAN_DAY1, day), position, result) for position, (day, result) in enumerate(samples)
    ]
    found = virological_cr_date(placed, _PLAN_DAY1, rules)
    return None if found is None else study_day(_PLAN_DAY1, found)


class _Simulator:
    """Builds the trial: plans for every participant, then their lines."""

    def __init__(self, participants: int, seed: int, protocol: Protocol) -> None:
        self.n = participants
        self.rng = random.Random(seed)
        self.protocol = protocol
        self.profiles = {
            code: SITE_PROFILES.get(code) or _default_profile(index, code)
            for index, code in enumerate(protocol.sites)
        }
        self._iso_cache: dict[int, str] = {}

    # -- dates and times -------------------------------------------------------

    def iso(self, ordinal: int) -> str:
        text = self._iso_cache.get(ordinal)
        if text is None:
            text = dt.date.fromordinal(ordinal).isoformat()
            self._iso_cache[ordinal] = text
        return text

    def stamp(self, minutes: int) -> str:
        """ISO 8601 date-time with the sites' offset for ``minutes`` since day 0."""
        day, minute = divmod(minutes, _DAY)
        return f"{self.iso(day)}T{minute // 60:02d}:{minute % 60:02d}:00{TIME_ZONE}"

    def work_time(self, ordinal: int) -> int:
        """A time during office hours on the date ``ordinal``."""
        return ordinal * _DAY + self.rng.randint(_WORK_START, _WORK_END)

    # -- the trial ---------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        candidates = self.screen()
        enrolled = [c for c in candidates if c.failure is None]
        self.plan(enrolled)
        streams = [self.participant(c) for c in candidates]
        keyed = [
            (entry, number, index, line)
            for number, stream in enumerate(streams)
            for index, (entry, line) in enumerate(zip(stream.entries, stream.lines, strict=True))
        ]
        keyed.sort(key=lambda item: item[:3])
        lines = []
        for entry, _, _, line in keyed:
            line["entered_at"] = self.stamp(entry)
            lines.append(line)
        return lines

    def screen(self) -> list[_Candidate]:
        """Everyone screened: sites, dates, codes numbered per site, screen failures."""
        rng = self.rng
        failures = round(self.n * rng.uniform(0.10, 0.15)) if self.n else 0
        total = self.n + failures
        codes = list(self.profiles)
        weights = [self.profiles[c].weight for c in codes]
        end = ACCRUAL_END.toordinal()
        dated: list[tuple[int, int, str]] = []
        for site in rng.choices(codes, weights, k=total):
            opens = STUDY_START.toordinal() + min(self.profiles[site].opens_after_days, 300)
            dated.append((rng.randint(opens, end), codes.index(site), site))
        sponsor = [i for i, item in enumerate(dated) if item[1] == 0]
        if sponsor:  # the sponsor site screens the first participant in January 2014
            first = min(sponsor, key=lambda i: dated[i][0])
            dated[first] = (STUDY_START.toordinal() + rng.randint(1, 14), *dated[first][1:])
        dated.sort()
        numbers = dict.fromkeys(codes, 0)
        candidates = []
        for day, _, site in dated:
            numbers[site] += 1
            candidates.append(_Candidate(f"{site}-{numbers[site]:03d}", site, day))
        kinds = [_SCREEN_FAILURES[i % len(_SCREEN_FAILURES)] for i in range(failures)]
        rng.shuffle(kinds)
        for candidate, kind in zip(
            (candidates[i] for i in sorted(rng.sample(range(total), failures))), kinds, strict=True
        ):
            candidate.failure = kind
        for i in rng.sample(range(total), round(total * 0.2)):  # CMV disease, not only infection
            candidates[i].disease = True
        return candidates

    def plan(self, enrolled: list[_Candidate]) -> None:
        """Decide responses, fates and the special cases, with the minimum counts
        that make the run show every rule of SPEC sections 2 and 5."""
        rng, n = self.rng, len(enrolled)
        plans = [_Plan(disease=c.disease) for c in enrolled]
        for candidate, plan in zip(enrolled, plans, strict=True):
            candidate.plan = plan
        order = list(range(n))
        rng.shuffle(order)

        def pick(pool: list[int], k: int) -> list[int]:
            return sorted(rng.sample(pool, min(k, len(pool))))

        not_infused = order[: _quota(n, 0.008, 1)]
        infused = order[len(not_infused) :]
        k_none = _quota(len(infused), 0.22, 3)
        k_early = round(len(infused) * 0.42)
        nonresponders = sorted(infused[:k_none])
        early = sorted(infused[k_none : k_none + k_early])
        late = sorted(infused[k_none + k_early :])
        for i in not_infused:
            plans[i].response = "not_infused"
            plans[i].fate = "withdrew"
            plans[i].fate_day = rng.randint(1, 3)
        for i in nonresponders:
            plans[i].response = "none"
        for i in early:
            plans[i].response = "early"
        responders = sorted(early + late)

        deaths = _quota(n, 0.07, 3)
        dying_nonresponders = pick(nonresponders, (deaths + 1) // 2)
        dying_responders = pick(responders, deaths - len(dying_nonresponders))
        window = self.protocol.follow_up.window_days
        for i in dying_nonresponders:
            plans[i].fate, plans[i].fate_day = "died", rng.randint(10, min(120, window))
            plans[i].fatal = rng.choice(_FATAL_NONRESPONDER)
        for i in dying_responders:
            plans[i].fate = "died"
            plans[i].fate_day = rng.randint(min(90, window), max(min(330, window - 10), 1))
            plans[i].fatal = rng.choice(_FATAL_RESPONDER)
        worsening = dying_responders or dying_nonresponders
        if worsening:
            plans[worsening[0]].fatal_worsening = True
        alive = [i for i in sorted(infused) if plans[i].fate is None]
        for i in pick(alive, _quota(n, 0.04, 2)):
            plans[i].fate, plans[i].fate_day = "withdrew", rng.randint(20, max(20, window - 100))
        completers = [i for i in sorted(infused) if plans[i].fate is None]
        infused_sorted = sorted(infused)
        responders_completing = [i for i in completers if plans[i].response != "none"]

        def flag(pool: list[int], name: str, k: int) -> None:
            for i in pick(pool, k):
                plans[i].flags.add(name)

        deviations = pick(infused_sorted, 2 if n >= 20 else min(n, 1))
        for i, kind in zip(deviations, ("age", "hr"), strict=False):
            plans[i].deviation = kind
        flag(responders_completing, "recurrence", _quota(n, 0.06, 2))
        surviving = [i for i in nonresponders if plans[i].fate is None] or nonresponders
        low_uloq = [i for i in surviving if self.assay(enrolled[i]).uloq_iu_ml <= 1e7]
        flag(low_uloq or surviving, "above_uloq", _quota(n, 0.01, 1))
        flag(infused_sorted, "dose_deviation", _quota(n, 0.03, 2))
        flag(completers, "late_result", _quota(n, 0.05, 2))
        flag(infused_sorted, "cmv_typo", _quota(n, 0.02, 2))
        flag(sorted(order), "weight_typo", _quota(n, 0.015, 1))
        flag(infused_sorted, "lot_typo", _quota(n, 0.01, 1))
        flag(completers, "causality_fix", _quota(n, 0.01, 1))
        flag(infused_sorted, "duplicate_void", _quota(n, 0.015, 1))
        flag(completers, "ae_void", _quota(n, 0.01, 1))
        flag(completers, "late_sae", _quota(n, 0.012, 1))
        flag(completers, "worsening", _quota(n, 0.04, 1))
        if completers:
            for category in CATEGORIES:
                plans[rng.choice(completers)].forced_aes.append(category)

    def assay(self, candidate: _Candidate) -> Assay:
        return self.profiles[candidate.site].assay

    # -- one participant -----------------------------------------------------------

    def participant(self, c: _Candidate) -> _Stream:
        """Every line of one screened person, in the order the site entered them."""
        rng = self.rng
        profile = self.profiles[c.site]
        users = profile.users
        coordinators = users[:-1] if len(users) > 2 else users
        stream = _Stream(c.code, c.site, users)
        plan = c.plan
        enroll = c.screened + rng.randint(1, 6)
        screening = self.screening_fields(c, plan)
        lag = min(rng.choice((0, 0, 0, 1, 1, 2)), enroll - c.screened - 1)
        stream.add(
            "scr",
            "ParticipantScreened",
            screening,
            self.work_time(c.screened + lag),
            rng.choice(coordinators),
        )
        if plan is None:
            return stream
        assay = profile.assay
        # Baseline load (refractory: 10^3-10^5 IU/mL), lower in early responders.
        base_log = rng.uniform(3.0, 4.2 if plan.response == "early" else 5.0)
        if "above_uloq" in plan.flags:
            base_log = rng.uniform(5.0, 5.5)
        if assay.specimen == "whole_blood":
            base_log += 0.2
        base_line = stream.add(
            "cmv-00",
            "CMVLoadMeasured",
            self.cmv_fields(c.code, c.screened, assay, _Sample(0, "quantified", base_log)),
            self.work_time(c.screened + rng.randint(0, 1)),
            rng.choice(coordinators),
        )
        organ = None
        if plan.disease:
            organ = rng.choices([o for o, _ in _ORGANS], [w for _, w in _ORGANS])[0]
            stream.add(
                "dis-0",
                "CMVDiseaseAssessed",
                {
                    "participant": c.code,
                    "effective": self.iso(c.screened),
                    "status": "active",
                    "organ": organ,
                },
                self.work_time(c.screened + rng.randint(0, 1)),
                rng.choice(coordinators),
            )
        weight = self.weight(screening["age_years"], screening["sex"])
        typed_weight = weight
        if "weight_typo" in plan.flags:
            tens, units = divmod(int(weight), 10)
            typed_weight = float(units * 10 + tens) if tens != units and units else weight + 10
            typed_weight = round(typed_weight + (weight - int(weight)), 1)
        enrollment: dict[str, Any] = {
            "participant": c.code,
            "effective": self.iso(enroll),
            "weight_kg": typed_weight,
        }
        deviation_number = f"PD-{dt.date.fromordinal(enroll).year}-{rng.randint(3, 19):03d}"
        if plan.deviation == "age":
            enrollment["deviation"] = (
                f"Age {screening['age_years']} at consent, above the protocol limit; enrolled"
                f" with the sponsor's written waiver (protocol deviation {deviation_number})"
            )
        elif plan.deviation == "hr":
            enrollment["deviation"] = (
                f"Heart rate {screening['hr']}/min at screening during fever (38.6 C); the PI"
                " judged it not clinically significant and enrolled; reported to the ethics"
                f" committee as protocol deviation {deviation_number}"
            )
        enrolled = stream.add(
            "enr",
            "ParticipantEnrolled",
            enrollment,
            enroll * _DAY + rng.randint(540, 960),
            rng.choice(coordinators),
        )
        if typed_weight != weight:
            stream.add(
                "cor-1",
                "EventCorrected",
                {
                    "target": f"{c.code}-enr",
                    "changes": {"weight_kg": weight},
                    "reason": f"Digits mistyped at entry: {typed_weight} kg entered, the source"
                    f" document shows {weight} kg",
                },
                stream.entries[enrolled] + rng.randint(10, 45) * _DAY,
                users[-1],
                (enrolled,),
            )
        if plan.response == "not_infused":
            day = enroll + plan.fate_day
            stream.add(
                "wd",
                "ParticipantWithdrew",
                {
                    "participant": c.code,
                    "effective": self.iso(day),
                    "reason": "Withdrew consent before the first MSC infusion",
                },
                self.work_time(day + rng.randint(0, 2)),
                rng.choice(coordinators),
                (enrolled,),
            )
            return stream
        self.treated(c, plan, stream, enroll, enrolled, assay, organ, base_log, base_line)
        return stream

    def screening_fields(self, c: _Candidate, plan: _Plan | None) -> dict[str, Any]:
        """The screening record (SPEC section 2): eligible unless a failure or a
        deviation was planned, which breaks exactly one criterion."""
        rng, rules = self.rng, self.protocol.eligibility
        age = int(rng.triangular(rules.age_min, rules.age_max + 0.999, 33))
        sex = "M" if rng.random() < 0.58 else "F"
        vitals = {
            "hr": _clip(round(rng.gauss(82, 8)), rules.hr),
            "rr": _clip(round(rng.gauss(16, 1.8)), rules.rr),
            "sbp": _clip(round(rng.gauss(116, 10)), rules.sbp),
            "dbp": _clip(round(rng.gauss(73, 7)), rules.dbp),
        }
        refractory: str | None = "disease" if c.disease else "infection"
        consent = c.screened - rng.choice((0, 0, 1, 1, 2, 3))
        excluded = False
        failure = c.failure
        if failure == "age_low":
            age = max(0, rules.age_min - rng.randint(1, 3))
        elif failure == "age_high" or (plan is not None and plan.deviation == "age"):
            age = rules.age_max + (1 if plan is not None else rng.randint(1, 6))
        elif failure == "not_refractory":
            refractory = None
        elif failure == "excluded":
            excluded = True
        elif failure == "consent_late":
            consent = c.screened + rng.randint(1, 5)
        elif failure == "vitals":
            vital = rng.choice(("hr", "rr", "sbp", "dbp"))
            low, high = getattr(rules, vital)
            if vital != "rr" and rng.random() < 0.3:
                vitals[vital] = max(1, low - rng.randint(3, 10))
            else:
                vitals[vital] = high + rng.randint(3, 25)
        if plan is not None and plan.deviation == "hr":
            vitals["hr"] = rules.hr[1] + 4
        minor = age < 18
        return {
            "participant": c.code,
            "site": c.site,
            "effective": self.iso(c.screened),
            "age_years": age,
            "sex": sex,
            "refractory_cmv": refractory,
            "consent_date": self.iso(consent),
            "consent_by": "representative" if minor or rng.random() < 0.06 else "participant",
            **vitals,
            "investigator_excluded": excluded,
        }

    def weight(self, age: int, sex: str) -> float:
        mean, sd = (50, 9) if age < 18 else (65, 10) if sex == "M" else (55, 9)
        return round(min(110.0, max(35.0, self.rng.gauss(mean, sd))), 1)

    def cmv_fields(self, code: str, ordinal: int, assay: Assay, sample: _Sample) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "participant": code,
            "effective": self.iso(ordinal),
            "specimen": assay.specimen,
            "assay": assay.name,
            "lloq_iu_ml": assay.lloq_iu_ml,
            "result": sample.result,
        }
        if sample.result == "quantified":
            fields["value_iu_ml"] = _value(sample.log_value or 0.0)
        return fields

    def schedule(self, end: int) -> list[int]:
        """Sampling study days up to ``end``: fixed in the first two weeks, a day
        or a few of jitter later, an occasional missed visit, the last one in the
        final week of the follow-up window (SPEC section 2)."""
        rng = self.rng
        window = self.protocol.follow_up.window_days
        planned = [d for d in _SCHEDULE_EARLY if d < window]
        planned += [d for d in _SCHEDULE_LATE if _SCHEDULE_EARLY[-1] < d < window]
        planned.append(window)
        days: list[int] = []
        for day in planned:
            if day == window:
                day -= rng.randint(0, 7)
            elif day > 14:
                if day >= 35 and rng.random() < 0.04:
                    continue
                spread = 1 if day <= 84 else 3
                day += rng.randint(-spread, spread)
            if days and day <= days[-1] + 1:
                day = days[-1] + 2
            if day > end or day > window:
                break
            days.append(day)
        return days

    def kinetics(
        self, plan: _Plan, assay: Assay, days: list[int], second_course: int, base_log: float
    ) -> list[_Sample]:
        """CMV DNA load of each sample: log-linear decline to below the LLOQ for
        responders (after course 2 for late ones), a fluctuating load for
        non-responders, a recurrence or a result above the ULOQ where planned."""
        rng = self.rng
        floor = math.log10(assay.lloq_iu_ml)
        ceiling = math.log10(assay.uloq_iu_ml)
        start = max(base_log + rng.gauss(0.15, 0.2), floor + 0.5)
        samples: list[_Sample] = []
        negative_from: int | None = None
        if plan.response == "early":
            negative_from = 8 if rng.random() < 0.8 else 4
        elif plan.response == "late":
            target = second_course + rng.randint(4, 40)
            negative_from = next((d for d in days if d >= target), None)
        level = start
        plateau = start
        for day in days:
            if day == 1:
                samples.append(_Sample(day, "quantified", start))
                continue
            if negative_from is not None and day >= negative_from:
                since = day - negative_from
                below = rng.random() < (0.5 if since < 14 else 0.2)
                samples.append(_Sample(day, "below_lloq" if below else "not_detected"))
                continue
            if plan.response == "early":
                assert negative_from is not None
                share = (day - 1) / (negative_from - 1)
                level = start + (floor - start) * share + rng.gauss(0, 0.12)
            elif plan.response == "late":
                if day < second_course:
                    level = min(start + 0.6, max(floor + 0.3, level + rng.gauss(0.02, 0.15)))
                    plateau = level
                elif negative_from is not None:
                    share = (day - second_course) / max(1, negative_from - second_course)
                    level = plateau + (floor - plateau) * share + rng.gauss(0, 0.12)
                else:
                    level = max(floor + 0.3, level - 0.1 + rng.gauss(0, 0.15))
            else:
                # Non-responder: a fluctuating load, lower but persisting after two
                # months; the planned one climbs above the ULOQ first.
                drift, top = (-0.01 if day <= 56 else -0.12), min(6.5, ceiling - 0.2)
                if "above_uloq" in plan.flags:
                    if sum(s.result == "above_uloq" for s in samples) < 2:
                        drift, top = 0.45, ceiling + 0.3
                    else:
                        drift, top = -0.2, ceiling - 0.1
                level = min(top, max(floor + 0.1, level + rng.gauss(drift, 0.25)))
                if samples[-1].result == "quantified" and rng.random() < 0.12:
                    samples.append(_Sample(day, "below_lloq"))
                    continue
            level = max(level, floor + 0.08)
            result = "above_uloq" if level > ceiling else "quantified"
            samples.append(_Sample(day, result, level if result == "quantified" else None))
        if plan.response == "late" and negative_from is not None and rng.random() < 0.15:
            # A blip: one result below the LLOQ between two quantified ones.
            blips = [
                i
                for i in range(1, len(samples) - 1)
                if samples[i].day >= second_course
                and samples[i + 1].day < negative_from
                and samples[i - 1].result == "quantified"
            ]
            if blips:
                blip = rng.choice(blips)
                samples[blip] = _Sample(samples[blip].day, "below_lloq")
        if "recurrence" in plan.flags:
            self.recurrence(samples, floor)
        return samples

    def recurrence(self, samples: list[_Sample], floor: float) -> None:
        """A quantified result some weeks after remission, cleared again or not."""
        rng, remission = self.rng, self.protocol.remission
        cr = _virological_cr_day(((s.day, s.result) for s in samples), remission)
        if cr is None:
            return
        later = [i for i, s in enumerate(samples) if s.day >= max(cr + 28, 56)]
        if not later:
            return
        i = later[0]
        level = rng.uniform(floor + 0.3, floor + 1.7)
        samples[i] = _Sample(samples[i].day, "quantified", level)
        if i + 1 < len(samples) and rng.random() < 0.5:
            samples[i + 1] = _Sample(samples[i + 1].day, "quantified", max(level - 0.4, floor + 0.1))

    def treated(
        self,
        c: _Candidate,
        plan: _Plan,
        stream: _Stream,
        enroll: int,
        enrolled: int,
        assay: Assay,
        organ: str | None,
        base_log: float,
        base_line: int,
    ) -> None:
        """Infusions, CMV results, disease assessments, AEs and the end of an infused
        participant (SPEC section 2), with the planned corrections and voids."""
        rng, protocol = self.rng, self.protocol
        users = stream.users
        coordinators = users[:-1] if len(users) > 2 else users
        code = c.code
        first = enroll + rng.randint(0, 3)  # day 1

        def date(day: int) -> int:
            return first + day - 1

        window = protocol.follow_up.window_days
        end = min(window, LAST_EFFECTIVE.toordinal() - first + 1)
        if plan.fate is not None and plan.fate_day > end:
            plan.fate = None  # would have happened after the end of the study
        if plan.fate is not None:
            end = min(end, plan.fate_day)
        from_day = protocol.treatment.second_course_from_day
        second_day = from_day + rng.randint(0, 6)
        days = self.schedule(end)
        samples = self.kinetics(plan, assay, days, second_day, base_log)

        # Disease resolution (study day) for participants screened with disease.
        resolution: int | None = None
        if plan.disease:
            if plan.response == "early":
                resolution = 14 if rng.random() < 0.5 else rng.randint(22, 45)
            elif plan.response == "late":
                resolution = max(second_day + 5, 22) + rng.randint(0, 25)
            elif rng.random() < 0.45:
                resolution = rng.randint(28, 90)
        early_samples = [(s.day, s.result) for s in samples if s.day < from_day]
        early_cr = _virological_cr_day(early_samples, protocol.remission)
        cr_by_day_14 = early_cr is not None and (
            not plan.disease or (resolution is not None and resolution < from_day)
        )
        virological = _virological_cr_day(((s.day, s.result) for s in samples), protocol.remission)
        cr_day = None
        if virological is not None and (not plan.disease or resolution is not None):
            cr_day = max(virological, resolution or 0)
        courses: dict[int, tuple[int, int, int]] = {}  # course -> (day, minute, line)
        course_days = [1]
        if not cr_by_day_14 and end >= second_day:
            if cr_day is not None and cr_day < second_day:
                second_day = max(from_day, cr_day)
            course_days.append(second_day)
        target = protocol.treatment.target_cells_per_kg
        tolerance = protocol.treatment.dose_tolerance
        deviating = rng.randrange(len(course_days)) if "dose_deviation" in plan.flags else -1
        for number, day in enumerate(course_days, start=1):
            when = date(day) * _DAY + rng.randint(540, 660)
            if number - 1 == deviating:
                factor = rng.choice(
                    (
                        1 - tolerance - rng.uniform(0.05, 0.12),
                        1 + tolerance + rng.uniform(0.05, 0.15),
                    )
                )
            else:
                factor = 1 + rng.uniform(-0.7, 0.7) * tolerance
            month = dt.date.fromordinal(date(day) - rng.randint(10, 40))
            lot = f"MSC-{month:%y%m}-{rng.randint(1, 6):02d}"
            fields = {
                "participant": code,
                "effective": self.iso(date(day)),
                "course": number,
                "cells_per_kg": float(round(target * factor, -4)),
                "lot": lot,
            }
            typo = number == 1 and "lot_typo" in plan.flags
            if typo:
                fields["lot"] = f"MSC-{month:%m%y}-{lot[-2:]}"
            line = stream.add(
                f"inf-{number}",
                "MSCInfused",
                fields,
                when + rng.randint(30, 240),
                rng.choice(coordinators),
                (enrolled,),
            )
            courses[number] = (day, when, line)
            if typo:
                stream.add(
                    f"cor-lot-{number}",
                    "EventCorrected",
                    {
                        "target": stream.lines[line]["id"],
                        "changes": {"lot": lot},
                        "reason": f"Lot number mistyped; the cell release certificate shows {lot}",
                    },
                    stream.entries[line] + rng.randint(7, 40) * _DAY,
                    users[-1],
                    (line,),
                )

        self.cmv_lines(c, plan, stream, samples, date, assay, base_line)
        if plan.disease:
            self.disease_lines(code, stream, date, end, resolution, organ, coordinators)
        self.adverse_events(c, plan, stream, date, end, courses)
        if plan.fate == "withdrew":
            day = date(plan.fate_day)
            stream.add(
                "wd",
                "ParticipantWithdrew",
                {
                    "participant": code,
                    "effective": self.iso(day),
                    "reason": rng.choice(_WITHDRAWAL_REASONS),
                },
                self.work_time(day + rng.randint(0, 3)),
                rng.choice(coordinators),
            )

    def cmv_lines(
        self,
        c: _Candidate,
        plan: _Plan,
        stream: _Stream,
        samples: list[_Sample],
        date: Callable[[int], int],
        assay: Assay,
        base_line: int,
    ) -> None:
        """CMV results entered a few days after sampling; a late-entered result,
        a mistyped value and its correction, a duplicate and its void."""
        rng = self.rng
        users = stream.users
        coordinators = users[:-1] if len(users) > 2 else users
        late = -1
        if "late_result" in plan.flags:
            late_choices = [i for i, s in enumerate(samples[:-1]) if 18 <= s.day <= 84]
            late = rng.choice(late_choices) if late_choices else -1
        quantified = [i for i, s in enumerate(samples) if s.result == "quantified"]
        typo = rng.choice(quantified) if "cmv_typo" in plan.flags and quantified else -1
        duplicates = [i for i in range(1, len(samples)) if i != typo]
        duplicate = rng.choice(duplicates) if "duplicate_void" in plan.flags and duplicates else -1
        if typo < 0 and "cmv_typo" in plan.flags:
            typo = -2  # the baseline result carries the typo
        if typo == -2:
            self.correct_value(stream, base_line, "cmv-00")
        for i, sample in enumerate(samples):
            ordinal = date(sample.day)
            lag = rng.randint(15, 35) if i == late else rng.randint(1, 4)
            fields = self.cmv_fields(c.code, ordinal, assay, sample)
            suffix = f"cmv-{i + 1:02d}"
            line = stream.add(
                suffix,
                "CMVLoadMeasured",
                fields,
                self.work_time(ordinal + lag),
                rng.choice(coordinators),
            )
            if i == typo:
                self.correct_value(stream, line, suffix)
            if i == duplicate:
                copy = stream.add(
                    f"{suffix}b",
                    "CMVLoadMeasured",
                    dict(fields),
                    stream.entries[line] + rng.randint(30, 600),
                    users[0],
                    (line,),
                )
                stream.add(
                    f"void-{suffix}b",
                    "EventVoided",
                    {
                        "target": stream.lines[copy]["id"],
                        "reason": f"Duplicate entry of {stream.lines[line]['id']}: the same sample"
                        " was entered twice",
                    },
                    stream.entries[copy] + rng.randint(2, 20) * _DAY,
                    users[-1],
                    (copy,),
                )

    def correct_value(self, stream: _Stream, line: int, suffix: str) -> None:
        """Make line ``line``'s CMV value a typo (an extra zero) and correct it."""
        fields = stream.lines[line]
        true_value = fields["value_iu_ml"]
        fields["value_iu_ml"] = float(f"{true_value * 10:.4g}")
        stream.add(
            f"cor-{suffix}",
            "EventCorrected",
            {
                "target": fields["id"],
                "changes": {"value_iu_ml": true_value},
                "reason": f"Transcription error (an extra zero); the laboratory report shows"
                f" {true_value:g} IU/mL",
            },
            stream.entries[line] + self.rng.randint(14, 60) * _DAY,
            stream.users[-1],
            (line,),
        )

    def disease_lines(
        self,
        code: str,
        stream: _Stream,
        date: Callable[[int], int],
        end: int,
        resolution: int | None,
        organ: str | None,
        coordinators: tuple[str, ...],
    ) -> None:
        """CMV disease reassessed on day 14 (and 42 if unresolved), then resolved."""
        rng = self.rng
        checks: list[tuple[int, str]] = []
        if resolution is None or resolution > 14:
            checks.append((14, "active"))
        if resolution is None:
            checks.append((42, "active"))
        else:
            checks.append((resolution, "resolved"))
        for number, (day, status) in enumerate(checks, start=1):
            if day > end:
                break
            ordinal = date(day)
            stream.add(
                f"dis-{number}",
                "CMVDiseaseAssessed",
                {
                    "participant": code,
                    "effective": self.iso(ordinal),
                    "status": status,
                    "organ": organ,
                },
                self.work_time(ordinal + rng.randint(0, 3)),
                rng.choice(coordinators),
            )

    def adverse_events(
        self,
        c: _Candidate,
        plan: _Plan,
        stream: _Stream,
        date: Callable[[int], int],
        end: int,
        courses: dict[int, tuple[int, int, int]],
    ) -> None:
        """Adverse events of SPEC section 2 with follow-ups, and the death.

        The site numbers its AEs (``ae_id``, unique per participant) in the order
        it reports them.
        """
        rng = self.rng
        categories = list(_AE_CATEGORY_WEIGHTS)
        count = rng.choices((0, 1, 2, 3, 4, 5), (18, 27, 25, 16, 9, 5))[0]
        specs: list[tuple[str, str | None]] = [
            (category, None)
            for category in rng.choices(categories, list(_AE_CATEGORY_WEIGHTS.values()), k=count)
        ]
        specs += [(category, None) for category in plan.forced_aes]
        for name in ("late_sae", "causality_fix", "ae_void", "worsening"):
            if name in plan.flags:
                category = {
                    "late_sae": "infection",
                    "causality_fix": "hepatic_toxicity",
                    "ae_void": "other",
                }.get(name) or rng.choice(("hepatic_toxicity", "gvhd_acute", "other"))
                specs.append((category, name))
        if plan.fate == "died" and plan.fatal is not None:
            specs.append((plan.fatal[0], "fatal_worsening" if plan.fatal_worsening else "fatal"))
        reports: list[_AdverseEvent] = []
        infusion_days_used: set[int] = set()
        for category, tag in specs:
            if tag == "fatal":
                onset = max(1, plan.fate_day - rng.randint(0, 3))
            elif tag == "fatal_worsening":
                onset = max(1, plan.fate_day - rng.randint(7, 40))
            elif category == "infusion_reaction":
                course = rng.choice(sorted(courses))
                onset = courses[course][0]
                if onset in infusion_days_used:
                    continue
                infusion_days_used.add(onset)
            else:
                low, high = _AE_ONSET[category]
                if low > end:
                    continue
                onset = rng.randint(low, min(high, end))
            reports.append(self.adverse_event(plan, date, end, courses, onset, category, tag))
        reports.sort(key=lambda ae: ae.entry)
        for number, ae in enumerate(reports, start=1):
            self.adverse_event_lines(c.code, plan, stream, date, end, number, ae)

    def adverse_event(
        self,
        plan: _Plan,
        date: Callable[[int], int],
        end: int,
        courses: dict[int, tuple[int, int, int]],
        onset: int,
        category: str,
        tag: str | None,
    ) -> _AdverseEvent:
        """Term, grade, seriousness, causality, awareness and report time of one AE."""
        rng = self.rng
        term = rng.choice(_AE_TERMS[category])
        causality = rng.choices(*_CAUSALITY[category])[0]
        if tag in ("fatal", "fatal_worsening"):
            assert plan.fatal is not None
            term = plan.fatal[1]
            if tag == "fatal":
                grade, criteria = 5, ["death", "hospitalisation"]
            else:
                grade, criteria = 4, ["life_threatening", "hospitalisation"]
        elif tag == "late_sae":
            grade, criteria = 3, ["hospitalisation"]
        elif tag in ("causality_fix", "ae_void", "worsening"):
            grade, criteria = (2 if tag != "ae_void" else 1), []
            if tag == "causality_fix":
                causality = "possible"
            if tag == "ae_void":
                term = "Headache"
        else:
            grade = rng.choices((1, 2, 3, 4), _AE_GRADES[category])[0]
            criteria = _criteria(rng, category, grade)
        if category == "infusion_reaction":
            course = next(k for k, v in courses.items() if v[0] == onset)
            aware = courses[course][1] + rng.randint(20, 150)
            after: tuple[int, ...] = (courses[1][2], courses[course][2])
        else:
            after = (courses[1][2],)
            delay = rng.choice((0, 0, 0, 1, 1, 2))
            aware_day = plan.fate_day if tag == "fatal" else min(end, onset + delay)
            aware = date(aware_day) * _DAY + rng.randint(480, 1320)
        if tag == "late_sae":  # SPEC section 2: more than 24 h after awareness
            entry = aware + rng.randint(30 * 60, 100 * 60)
        elif criteria:  # serious: reported within the day
            entry = aware + rng.randint(45, 20 * 60)
        else:
            entry = (aware // _DAY + rng.randint(1, 14)) * _DAY
            entry += rng.randint(_WORK_START, _WORK_END)
        return _AdverseEvent(onset, category, tag, term, grade, criteria, causality, aware, entry, after)

    def adverse_event_lines(
        self,
        code: str,
        plan: _Plan,
        stream: _Stream,
        date: Callable[[int], int],
        end: int,
        number: int,
        ae: _AdverseEvent,
    ) -> None:
        """The report of one AE, its follow-ups, correction or void, and a death."""
        rng = self.rng
        users = stream.users
        coordinators = users[:-1] if len(users) > 2 else users
        ae_id = f"AE-{number:02d}"
        suffix = f"ae-{number:02d}"
        onset, category, tag, grade = ae.onset, ae.category, ae.tag, ae.grade
        report = stream.add(
            suffix,
            "AdverseEventReported",
            {
                "participant": code,
                "effective": self.iso(date(onset)),
                "ae_id": ae_id,
                "term": ae.term,
                "category": category,
                "grade": grade,
                "serious": bool(ae.criteria),
                "criteria": ae.criteria,
                "causality": ae.causality,
                "aware_at": self.stamp(ae.aware),
            },
            ae.entry,
            rng.choice(coordinators),
            ae.after,
        )
        entry = stream.entries[report]
        if tag == "ae_void":
            stream.add(
                f"void-{suffix}",
                "EventVoided",
                {"target": stream.lines[report]["id"], "reason": rng.choice(_VOID_AE_REASONS)},
                entry + rng.randint(2, 20) * _DAY,
                users[-1],
                (report,),
            )
            return
        if tag == "causality_fix":
            stream.add(
                f"cor-{suffix}",
                "EventCorrected",
                {
                    "target": stream.lines[report]["id"],
                    "changes": {"causality": "unlikely"},
                    "reason": "Causality reassessed by the principal investigator at the"
                    " monitoring visit: liver tests rose with voriconazole",
                },
                entry + rng.randint(14, 60) * _DAY,
                users[-1],
                (report,),
            )
        updates = 0
        last = report

        def update(day: int, fields: dict[str, Any], entry: int) -> None:
            nonlocal updates, last
            updates += 1
            last = stream.add(
                f"{suffix}-u{updates}",
                "AdverseEventUpdated",
                {"participant": code, "ae_id": ae_id, "effective": self.iso(date(day)), **fields},
                entry,
                rng.choice(coordinators),
                (last,),
            )

        if tag in ("fatal", "fatal_worsening"):
            death = date(plan.fate_day)
            fields: dict[str, Any] = {"outcome": "fatal"}
            if tag == "fatal_worsening":
                fields = {
                    "grade": 5,
                    "serious": True,
                    "criteria": ["death", "life_threatening", "hospitalisation"],
                    "outcome": "fatal",
                }
            died_at = max(death * _DAY + rng.randint(0, 1300), ae.aware)
            update(plan.fate_day, fields, died_at + rng.randint(60, 18 * 60))
            stream.add(
                "death",
                "ParticipantDied",
                {"participant": code, "effective": self.iso(death), "cause": ae.term},
                died_at + rng.randint(90, 20 * 60),
                rng.choice(coordinators),
            )
            return
        since = onset
        if tag == "worsening" and onset + 3 <= end:
            since = min(end, onset + rng.randint(3, 8))
            grade = 3
            update(since, {"grade": grade}, self.work_time(date(since) + rng.randint(1, 7)))
        low, high = _AE_DURATION[category]
        if high == 0:
            check = onset + rng.randint(30, 90)
            if check <= end and rng.random() < 0.4:
                update(
                    check,
                    {"outcome": "not_recovered"},
                    self.work_time(date(check) + rng.randint(1, 10)),
                )
            return
        if rng.random() < 0.7:
            resolved = since + rng.randint(low, high)
            if resolved <= end:
                sequelae = grade >= 3 and rng.random() < 0.15
                update(
                    resolved,
                    {
                        "outcome": "recovered_with_sequelae" if sequelae else "recovered",
                        "resolved_date": self.iso(date(resolved)),
                    },
                    self.work_time(date(resolved) + rng.randint(1, 10)),
                )
            elif since + 14 <= end:
                update(
                    since + 14,
                    {"outcome": "recovering"},
                    self.work_time(date(since + 14) + rng.randint(1, 10)),
                )


def _criteria(rng: random.Random, category: str, grade: int) -> list[str]:
    """ICH E2A seriousness criteria for a non-fatal AE (empty: not serious)."""
    if grade == 4:
        return ["life_threatening", "hospitalisation"] if rng.random() < 0.7 else ["life_threatening"]
    if category in ("underlying_disease_relapse", "secondary_malignancy"):
        return (
            ["hospitalisation", "important_medical_event"]
            if rng.random() < 0.5
            else ["important_medical_event"]
        )
    if grade == 3:
        if category == "gvhd_chronic" and rng.random() < 0.3:
            return ["disability"]
        return ["hospitalisation"] if rng.random() < 0.5 else []
    if grade == 2 and category == "infection" and rng.random() < 0.15:
        return ["hospitalisation"]
    return []


def _clip(value: int, bounds: tuple[int, int]) -> int:
    return min(bounds[1], max(bounds[0], value))


def _value(log_value: float) -> float:
    """A quantified load as labs report it: three significant digits."""
    return float(f"{10**log_value:.3g}")


def generate_trial(
    participants: int = 120, seed: int = 2014, protocol: Protocol | None = None
) -> list[dict[str, Any]]:
    """Simulate the trial and return its import lines (SPEC section 6), in entry order.

    ``participants`` is the number enrolled (the protocol plans 120, SPEC section
    1); 10-15 % more are screened and fail screening.  Lines are plain dicts
    ready for ``json.dumps``: ``type``, ``id``, ``site``, ``user``, the fields of the
    type and ``entered_at``.  The same ``participants``, ``seed`` and protocol
    always give the same lines; ``protocol`` defaults to NFH-MSC-CMV-2014.
    """
    if participants < 0:
        raise ValueError("participants must be zero or more")
    return _Simulator(participants, seed, protocol or load_protocol()).run()


def write_jsonl(lines: Iterable[dict[str, Any]], path_or_stream: str | Path | IO[str]) -> int:
    """Write ``lines`` as JSON Lines (SPEC section 6 import format); return the count.

    ``path_or_stream`` is a file path (created or overwritten, UTF-8) or an open
    text stream such as ``sys.stdout``.
    """
    if isinstance(path_or_stream, (str, Path)):
        with open(path_or_stream, "w", encoding="utf-8", newline="\n") as stream:
            return _write(lines, stream)
    return _write(lines, path_or_stream)


def _write(lines: Iterable[dict[str, Any]], stream: IO[str]) -> int:
    count = 0
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for line in lines:
        stream.write(encode(line))
        stream.write("\n")
        count += 1
    return count
