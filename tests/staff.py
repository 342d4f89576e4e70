"""Registered users with signing keys, and stored trials, for the tests of issue #6."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ledger.application import access, signatures
from ledger.application.importer import import_lines
from ledger.application.trial_ledger import Receipt, TrialLedger
from ledger.simulation.demo import generate_trial, write_jsonl
from tests import lines as L

PASSPHRASE = "correct horse battery"


def add_user(
    ledger: TrialLedger, keys: Path, name: str, role: str, site: str | None = None, by: str = "dm"
) -> Path:
    """Register ``name`` (by data manager ``by``), who then makes their own key; the key file."""
    key_file = keys / f"{name}.pem"
    full_name = name.replace(".", " ").title()
    access.register(ledger, by, name=name, full_name=full_name, role=role, user_site=site)
    signatures.make_key(ledger, name, key_file, PASSPHRASE)
    return key_file


def staffed(ledger: TrialLedger, keys: Path) -> dict[str, Path]:
    """The data manager ``dm`` first, then one user of every other role; their key files."""
    people = {"dm": ("data_manager", None)}
    people |= {
        "nfh.nurse": ("site_staff", "NFH"),
        "nfh.pi": ("investigator", "NFH"),
        "amms.pi": ("investigator", "AMMS"),
        "monitor": ("monitor", None),
        "auditor": ("auditor", None),
    }
    return {name: add_user(ledger, keys, name, role, site) for name, (role, site) in people.items()}


def store(ledger: TrialLedger, dicts: list[dict[str, Any]], user: str = "nfh.nurse") -> Receipt:
    return ledger.record(L.as_lines(dicts), user=user)


def generated(ledger: TrialLedger, participants: int) -> Receipt:
    """Import the demo's simulated trial (SPEC section 6 lines) into ``ledger``."""
    text = io.StringIO()
    write_jsonl(generate_trial(participants, 2014, ledger.protocol), text)
    return import_lines(ledger, io.BytesIO(text.getvalue().encode()), user="importer")
