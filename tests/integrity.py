"""The check every reliability test makes after a fault: the seal covers exactly the stored events."""

from __future__ import annotations

from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify
from ledger.storage.scan import snapshot


def sound_count(store: str) -> int:
    """The number of stored events, once ``verify`` has passed and the seal covers exactly them."""
    ledger = TrialLedger(store)
    try:
        with snapshot(ledger) as snap:
            events, entries = snap.event_count(), snap.entry_count()
        verdict = verify(ledger)
        assert verdict.ok, verdict.to_json()
        assert events == entries == verdict.size
        return events
    finally:
        ledger.close()
