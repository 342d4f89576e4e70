"""Monitors' questions, answered from the timelines read model (SPEC sections 3, 4 and 6).

``as_of`` is a clinical date (only events effective on or before it count);
``known_at`` a moment (only events the ledger had recorded by then count,
corrections included).  Both combine: the trial as of 31 December 2014 as the
ledger knew it on 1 March 2015.  The JSON shapes are the SPEC's, exactly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

from ledger.application.access import LockState, Trial, lock_state
from ledger.application.protocols import protocol_versions
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.entry import Entry
from ledger.domain.rules.corrections import ParticipantHistory, fold
from ledger.domain.rules.endpoints import endpoints, judged, named_versions, tally, versions_used
from ledger.domain.rules.versions import ProtocolVersions
from ledger.storage.timelines import Row
from projections.readmodel.timeline import CurrentTimelines, read_state


def histories(
    timelines: CurrentTimelines, known_at: dt.datetime | None, participant: str | None = None
) -> Iterator[ParticipantHistory]:
    """Each participant's current events as known at ``known_at`` (all if None)."""
    for code, stream in groupby(timelines.rows(participant), key=lambda row: row[0]):
        folded = fold(_known(code, stream, known_at))
        if code in folded:
            yield folded[code]


def _known(code: str, stream: Iterable[Row], known_at: dt.datetime | None) -> Iterator[Entry]:
    """The entries of one stream's rows that the ledger had recorded by ``known_at``."""
    for row in stream:
        stored = read_state(row)
        if known_at is None or stored.timestamp <= known_at:
            yield Entry(row[1], stored.timestamp, code, stored.record)


def _code_order(participant: str) -> tuple[str, int, str]:
    site, _, number = participant.partition("-")
    return (site, int(number) if number.isascii() and number.isdigit() else 0, number)


class Monitor:
    """Read side of one ledger: checks the read model, then answers; writes nothing (issue 12 item 4).

    ``status`` and ``endpoints`` look each participant up in the read model's
    summaries (:mod:`ledger.domain.summary`, issue 14); where the summaries
    cannot answer (a store whose summaries lag or were never made, a known-at
    moment inside a batch recorded out of order, a ledger read under another
    protocol file than it was written with), they replay the timelines, which
    gives the same answer in time proportional to the ledger.
    """

    def __init__(self, ledger: TrialLedger) -> None:
        self.ledger = ledger
        self.view = CurrentTimelines(ledger)

    def status(
        self, as_of: dt.date, known_at: dt.datetime | None, participant: str | None = None
    ) -> dict[str, Any]:
        """``status`` of SPEC section 6: every participant screened on or before ``as_of``."""
        versions = self.versions(known_at)
        standings = self.view.standings(as_of, known_at, versions, participant)
        if standings is None:
            judged_rows = judged(histories(self.view, known_at, participant), as_of, versions)
            rows = [{**row.status.to_json(), "protocol_version": row.version.version} for row in judged_rows]
            used = versions_used(judged_rows)
        else:
            rows = [
                {**s.status.to_json(), "protocol_version": versions.adopted[s.version].version}
                for s in standings
            ]
            used = named_versions(versions.adopted[s.version] for s in standings)
        rows.sort(key=lambda row: _code_order(row["participant"]))
        return {
            "as_of": as_of.isoformat(),
            "known_at": _instant(known_at),
            "participants": rows,
            "protocol_versions": used,
        }

    def endpoints(self, as_of: dt.date, known_at: dt.datetime | None) -> dict[str, Any]:
        """``endpoints`` of SPEC section 6, plus ``lock``: whether the data were locked then."""
        versions = self.versions(known_at)
        standings = self.view.standings(as_of, known_at, versions)
        if standings is None:
            result = endpoints(histories(self.view, known_at), as_of, versions)
        else:
            result = {
                **tally(s.contribution for s in standings),
                "protocol_versions": named_versions(versions.adopted[s.version] for s in standings),
            }
        lock = self.lock(known_at).to_json()
        return {"as_of": as_of.isoformat(), "known_at": _instant(known_at), **result, "lock": lock}

    def versions(self, known_at: dt.datetime | None) -> ProtocolVersions:
        """The protocol versions adopted as known at ``known_at`` (SPEC section 2)."""
        return protocol_versions(self.ledger, known_at)

    def lock(self, known_at: dt.datetime | None) -> LockState:
        """The database lock as known at ``known_at``, from the trial-level stream alone."""
        return lock_state(self.entries(Trial.STREAM, known_at))

    def entries(self, stream: str, known_at: dt.datetime | None) -> Iterator[Entry]:
        """One stream's stored events recorded by ``known_at``, in ledger order."""
        return _known(stream, self.view.rows(stream), known_at)


def _instant(moment: dt.datetime | None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
