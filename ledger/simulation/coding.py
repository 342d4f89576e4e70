"""The demo's coder: codes the simulated trial's adverse events with a fictitious dictionary (issue 15).

MedDRA is licensed and the ledger ships no dictionary.  So that the demo trial
exports complete SDTM datasets, its adverse events are coded with
``fictitious-dictionary.toml``: every name and code in it is invented (codes
start with 99, names with "Fictional") and it must never code real data.  The
codings go through ``code-ae``'s use case like a coder's, as ``central.coder`` (on
PostgreSQL, as the login that runs the demo, unless it is a superuser).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.application.coding import Coded, Coding, code_adverse_events, uncoded
from ledger.domain.events import MEDDRA_LEVELS

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

DICTIONARY = Path(__file__).with_name("fictitious-dictionary.toml")
CODER = "central.coder"


def load_dictionary(path: Path = DICTIONARY) -> tuple[str, dict[str, dict[str, Any]]]:
    """The dictionary's name and version, and for each verbatim term its five levels as ``[code, name]``."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return data["dictionary"], data["terms"]


def code_demo(ledger: TrialLedger, user: str = CODER) -> list[Coded]:
    """Code every uncoded AE whose verbatim term the fictitious dictionary holds; the codings stored."""
    dictionary, terms = load_dictionary()
    codings = []
    for term in uncoded(ledger.entries()):
        levels = terms.get(term.term)
        if levels is None:
            continue
        chosen = {
            f"{level}{part}": levels[level][i]
            for level in MEDDRA_LEVELS
            for i, part in enumerate(("_code", ""))
        }
        codings.append(Coding(term.participant, term.ae_id, dictionary, **chosen))
    return code_adverse_events(ledger, user, codings) if codings else []
