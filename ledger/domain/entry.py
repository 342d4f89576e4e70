"""What read models see of one stored event (SPEC section 4: two times)."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from ledger.domain.events import Record


class Entry(NamedTuple):
    """One stored event in ledger order.

    ``position`` is the notification id (the ledger's total order, 1-based),
    ``recorded_at`` the UTC time the ledger stored it, ``participant`` the
    participant whose stream holds it (corrections and voids included), and
    ``record`` the validated record with ``id``, ``user`` and ``site`` filled in
    by the ledger; its ``effective`` is the clinical date.
    """

    position: int
    recorded_at: dt.datetime
    participant: str
    record: Record
