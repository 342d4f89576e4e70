"""Keys in their owners' hands (issue 12, item 6), on SQLite and PostgreSQL.

``user add`` makes no key and writes no file; each user makes their own key
pair under their own login with ``key new`` (passphrase from a prompt that does
not echo it, or ``--passphrase-file``), and two users may not share a full name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access, signatures
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import Refused
from ledger.domain.events import ActionRefused, KeyRegistered
from tests.staff import PASSPHRASE


def run(store_url: str, home: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", store_url, *args], env={"HOME": str(home)}, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_user_add_writes_no_key_and_the_user_makes_their_own(store_url: str, tmp_path: Path) -> None:
    manager, investigator = tmp_path / "dm-home", tmp_path / "pi-home"
    for home in (manager, investigator):
        home.mkdir()
    for name, role, site in (("dm", "data_manager", None), ("nfh.pi", "investigator", "NFH")):
        where = ["--site", site] if site else []
        args = ["--user", "dm", "user", "add", name, "--role", role, *where, "--full-name", name.upper()]
        code, _, err = run(store_url, manager, *args)
        assert code == 0, err
    assert [
        p for p in manager.rglob("*") if p.is_file()
    ] == []  # no private key anywhere in the manager's home
    # The investigator, in their own home, asked for the passphrase (never echoed).
    code, out, err = run(
        store_url, investigator, "--user", "nfh.pi", "key", "new", stdin=f"{PASSPHRASE}\n" * 2
    )
    assert code == 0, err
    assert PASSPHRASE not in out
    key_file = investigator / ".trial-ledger" / "nfh.pi.pem"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    [registered] = [e.record for e in TrialLedger(store_url).entries() if isinstance(e.record, KeyRegistered)]
    assert (registered.name, registered.user) == ("nfh.pi", "nfh.pi")
    # A passphrase file (for scripts and CI) works as the prompt does; a missing one is exit 2.
    secret = tmp_path / "secret"
    secret.write_text(PASSPHRASE + "\n")
    code, out, err = run(
        store_url, manager, "--user", "dm", "--json", "key", "new", "--passphrase-file", str(secret)
    )
    assert code == 0, err
    assert json.loads(out)["key_file"] == str(manager / ".trial-ledger" / "dm.pem")
    code, _, err = run(
        store_url, manager, "--user", "dm", "key", "new", "--passphrase-file", str(tmp_path / "no")
    )
    assert code == 2 and err.startswith("error: passphrase-file: cannot read")
    # Nobody makes a key as a user who is not registered.
    code, _, err = run(
        store_url, manager, "--user", "visitor", "key", "new", "--passphrase-file", str(secret)
    )
    assert code == 3 and "user 'visitor' is not registered" in err
    assert not (manager / ".trial-ledger" / "visitor.pem").exists()


@pytest.mark.parametrize("other", ["Dana Manager", "dana  manager", " DANA MANAGER "])
def test_two_users_with_the_same_full_name_are_refused(store_url: str, other: str) -> None:
    ledger = TrialLedger(store_url)
    access.register(ledger, "dm", name="dm", full_name="Dana Manager", role="data_manager", user_site=None)
    with pytest.raises(
        Refused, match="dm is already registered as Dana Manager: full names identify signers"
    ):
        access.register(ledger, "dm", name="dm2", full_name=other, role="data_manager", user_site=None)
    refused = [e.record for e in ledger.entries() if isinstance(e.record, ActionRefused)]
    assert [(r.user, r.action) for r in refused] == [("dm", "user add")]
    assert access.register(
        ledger, "dm", name="dm3", full_name="Dana Manager II", role="auditor", user_site=None
    )


def test_a_deactivated_user_neither_blocks_their_name_nor_registers_a_key(
    store_url: str, tmp_path: Path
) -> None:
    ledger = TrialLedger(store_url)
    access.register(ledger, "dm", name="dm", full_name="Dana Manager", role="data_manager", user_site=None)
    access.register(ledger, "dm", name="nfh.li", full_name="Li Na", role="site_staff", user_site="NFH")
    access.deactivate_user(ledger, "dm", name="nfh.li", reason="left the trial")
    with pytest.raises(Refused, match=r"user nfh\.li is deactivated \(left the trial\)"):
        signatures.make_key(ledger, "nfh.li", tmp_path / "li.pem", PASSPHRASE)
    assert not (tmp_path / "li.pem").exists()
    # The name of a user who is no longer active may be a new user's (who signs with their own key).
    assert access.register(
        ledger, "dm", name="nfh.li2", full_name="Li Na", role="site_staff", user_site="NFH"
    )
