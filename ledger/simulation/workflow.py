"""``demo``: simulate the trial, import it like site data, code its AEs, then project it (SPEC section 6).

The use case behind the ``demo`` command (issue 13: the command line only
parses and prints).  The simulated lines go through the same validated,
all-or-nothing import as any file, so running the same demo twice stores
nothing the second time.  The demo's coder then codes the adverse events with
the fictitious dictionary (:mod:`ledger.simulation.coding`; issue 15).
``--jsonl`` is written like every other output (:mod:`ledger.storage.outputs`):
never over a ledger, atomically.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.application.access import acting
from ledger.application.importer import import_lines
from ledger.application.protocols import adopt_at_init
from ledger.simulation.coding import code_demo
from ledger.simulation.demo import generate_trial, write_jsonl
from ledger.storage.outputs import output_file
from projections.readmodel.queries import Monitor

if TYPE_CHECKING:
    from ledger.application.trial_ledger import Receipt, TrialLedger

# The steps of a run, for a progress display.
STEPS = 4


@dataclass(frozen=True)
class DemoRun:
    """What a demo did: the import's receipt, the AEs coded, and the status and endpoints as of ``today``."""

    receipt: Receipt
    events: int
    coded: int
    status: dict[str, Any]
    endpoints: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": len(self.receipt.stored),
            "skipped": len(self.receipt.skipped),
            "coded": self.coded,
            "status": self.status,
            "endpoints": self.endpoints,
        }


def run_demo(
    ledger: TrialLedger,
    participants: int,
    seed: int,
    *,
    user: str | None = None,
    jsonl: str | None = None,
    step: Callable[[str], None] = lambda _description: None,
) -> DemoRun:
    """Simulate ``participants`` enrolled with ``seed``, import them, and project the trial today.

    ``step`` is told what starts next (``STEPS`` times); ``jsonl`` also saves the
    lines in the import format.
    """
    # A new demo store is made like any other: the protocol adopted first, as init does.
    user = acting(
        ledger, user, "demo"
    )  # who runs the demo enters its lines (the sites' users are their source)
    if not ledger.recorder.max_notification_id():
        adopt_at_init(ledger, user)
    lines = generate_trial(participants, seed, ledger.protocol)
    if jsonl:
        with output_file(jsonl, "jsonl", ledger.store) as temporary:
            write_jsonl(lines, temporary)
    text = io.StringIO()
    write_jsonl(lines, text)
    step(f"importing {len(lines)} events")
    receipt = import_lines(ledger, io.BytesIO(text.getvalue().encode()), user=user)
    step("coding the adverse events (fictitious dictionary)")
    # The demo's coder, where the actor may be named; on PostgreSQL the login itself (issue 12, item 1).
    login = ledger.login
    coded = len(code_demo(ledger) if login is None or login.superuser else code_demo(ledger, user))
    step("projecting status and endpoints")
    monitor = Monitor(ledger)
    today = dt.date.today()
    run = DemoRun(receipt, len(lines), coded, monitor.status(today, None), monitor.endpoints(today, None))
    step("done")
    return run
