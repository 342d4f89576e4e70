"""Primary and secondary endpoints on a clinical date (SPEC section 3 and 6, ``endpoints``).

Primary: the proportion of participants who achieve complete remission within
the follow-up window (CR date on or before day ``window_days``), in the mITT
population (at least one infusion as of the date) and the ITT population (all
enrolled as of the date), with the exact Clopper-Pearson 95% CI and the count
of participants still ``ongoing``.

Secondary: adverse events of infused participants with onset on days 1 to
``window_days`` (and on or before the as-of date), with their values after
corrections and after the updates effective on or before the as-of date;
voided events count nowhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ledger.domain.events import CATEGORIES
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import ParticipantHistory
from ledger.domain.rules.safety import adverse_events
from ledger.domain.rules.stats import proportion_percent
from ledger.domain.rules.status import ParticipantStatus, summarise
from ledger.domain.rules.treatment import follow_up_closed, within_follow_up
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions, judging_version


class Judged(NamedTuple):
    """A participant on a clinical date, with the protocol version that judged them."""

    history: ParticipantHistory
    status: ParticipantStatus
    version: AdoptedProtocol


def judged(
    histories: Iterable[ParticipantHistory], as_of: dt.date, versions: ProtocolVersions
) -> list[Judged]:
    """Each participant screened by ``as_of``, summarised under the version in force for them."""
    rows = []
    for history in histories:
        version = judging_version(history, as_of, versions)
        status = summarise(history, as_of, version.protocol) if version is not None else None
        if version is not None and status is not None:
            rows.append(Judged(history, status, version))
    return rows


def versions_used(rows: Iterable[Judged]) -> list[dict[str, Any]]:
    """The protocol versions that judged ``rows``, in order of effective date."""
    return named_versions(row.version for row in rows)


def named_versions(versions: Iterable[AdoptedProtocol]) -> list[dict[str, Any]]:
    """Each of ``versions`` once, in order of effective date, as ``protocol_versions`` lists them."""
    used = {version.sha256: version for version in versions}
    return [v.to_json() for v in sorted(used.values(), key=lambda v: (v.effective, v.version))]


def endpoints(
    histories: Iterable[ParticipantHistory], as_of: dt.date, versions: ProtocolVersions
) -> dict[str, Any]:
    """The SPEC section 6 ``endpoints`` object without ``as_of`` and ``known_at``.

    ``{"primary": {...mITT}, "primary_itt": {...ITT}, "secondary": {...},
    "protocol_versions": [...]}``; see :func:`primary` and :func:`secondary` for
    the contents.  Each participant counts under the protocol version in force
    for them (SPEC section 2), named in ``protocol_versions``.
    """
    rows = judged(histories, as_of, versions)
    return {**tally(contribution(row, as_of) for row in rows), "protocol_versions": versions_used(rows)}


class Contribution(NamedTuple):
    """What one participant adds to the endpoints on a clinical date (SPEC section 3).

    ``populations``: those the participant belongs to (:func:`in_population`);
    ``responder`` and ``ongoing`` (:func:`responder`, :func:`ongoing`);
    ``adverse_events``: the category and current seriousness of each of their
    adverse events that counts for the secondary endpoint.
    """

    participant: str
    populations: tuple[str, ...]
    responder: bool
    ongoing: bool
    adverse_events: tuple[tuple[str, bool], ...]


def contribution(row: Judged, as_of: dt.date) -> Contribution:
    """The endpoints' view of one judged participant on ``as_of``.

    An adverse event counts for the secondary endpoint when the participant was
    infused and its onset lies on study days 1 to ``window_days`` (and, as every
    event that counts, on or before ``as_of``).
    """
    history, status, version = row
    protocol = version.protocol
    day1 = status.first_infusion
    counted = (
        ()
        if day1 is None
        else tuple(
            (ae.category, ae.serious)
            for ae in adverse_events(history, as_of)
            if within_follow_up(day1, ae.onset, protocol)
        )
    )
    return Contribution(
        participant=status.participant,
        populations=tuple(name for name in POPULATIONS if in_population(status, name)),
        responder=responder(status, protocol),
        ongoing=ongoing(status, as_of, protocol),
        adverse_events=counted,
    )


def tally(contributions: Iterable[Contribution]) -> dict[str, Any]:
    """``{"primary", "primary_itt", "secondary"}`` of SPEC section 6 from each participant's contribution."""
    counted = list(contributions)
    return {
        "primary": primary_of(counted, "mITT"),
        "primary_itt": primary_of(counted, "ITT"),
        "secondary": secondary_of(counted),
    }


def in_population(status: ParticipantStatus, population: str) -> bool:
    """mITT: at least one infusion as of the date; ITT: enrolled as of the date."""
    return POPULATIONS[_known(population)](status)


POPULATIONS: dict[str, Callable[[ParticipantStatus], bool]] = {
    "mITT": lambda status: status.courses > 0,
    "ITT": lambda status: status.enrolled is not None,
}


def _known(population: str) -> str:
    if population not in POPULATIONS:
        raise ValueError(f"unknown population {population!r}")
    return population


def responder(status: ParticipantStatus, protocol: Protocol) -> bool:
    """Complete remission reached within the follow-up window (CR date on days 1 to ``window_days``)."""
    if status.first_infusion is None or status.cr_date is None:
        return False
    return within_follow_up(status.first_infusion, status.cr_date, protocol)


def ongoing(status: ParticipantStatus, as_of: dt.date, protocol: Protocol) -> bool:
    """A participant without CR still in the running on ``as_of`` (SPEC section 3).

    Not a responder, not died or withdrawn as of the date, and either not yet
    infused (only possible in ITT) or within the follow-up window (as_of on or
    before the window's last day).
    """
    if responder(status, protocol) or status.died is not None or status.withdrawn is not None:
        return False
    if status.first_infusion is None:
        return True
    return not follow_up_closed(status.first_infusion, as_of, protocol)


def primary(rows: Iterable[Judged], as_of: dt.date, population: str = "mITT") -> dict[str, Any]:
    """``{"population", "n", "N", "percent", "ci95": [lo, hi], "ongoing"}`` (SPEC section 6).

    Percent and CI bounds are in percent, rounded half up to two decimals, and
    None when N is 0.
    """
    return primary_of([contribution(row, as_of) for row in rows], population)


def primary_of(contributions: Iterable[Contribution], population: str) -> dict[str, Any]:
    """:func:`primary` from each participant's contribution."""
    _known(population)
    members = [c for c in contributions if population in c.populations]
    n = sum(1 for c in members if c.responder)
    total = len(members)
    percent, low, high = proportion_percent(n, total)
    return {
        "population": population,
        "n": n,
        "N": total,
        "percent": percent,
        "ci95": [low, high],
        "ongoing": sum(1 for c in members if c.ongoing),
    }


def secondary(rows: Iterable[Judged], as_of: dt.date) -> dict[str, Any]:
    """Adverse-event counts of infused participants (SPEC section 3, secondary endpoint).

    ``{"participants_with_serious_ae", "participants_with_nonserious_ae",
    "by_category": {CATEGORY: {"participants", "events", "serious_events"}}}``,
    every category listed, zeros included.  An AE counts when its onset is on
    study days 1 to ``window_days`` and on or before ``as_of``; seriousness
    and category are its current values.
    """
    return secondary_of(contribution(row, as_of) for row in rows)


def secondary_of(contributions: Iterable[Contribution]) -> dict[str, Any]:
    """:func:`secondary` from each participant's contribution."""
    with_serious: set[str] = set()
    with_nonserious: set[str] = set()
    by_category: dict[str, dict[str, Any]] = {
        category: {"participants": set(), "events": 0, "serious_events": 0} for category in CATEGORIES
    }
    for counted in contributions:
        for category, serious in counted.adverse_events:
            (with_serious if serious else with_nonserious).add(counted.participant)
            counts = by_category[category]
            counts["participants"].add(counted.participant)
            counts["events"] += 1
            if serious:
                counts["serious_events"] += 1
    return {
        "participants_with_serious_ae": len(with_serious),
        "participants_with_nonserious_ae": len(with_nonserious),
        "by_category": {
            category: {
                "participants": len(counts["participants"]),
                "events": counts["events"],
                "serious_events": counts["serious_events"],
            }
            for category, counts in by_category.items()
        },
    }
