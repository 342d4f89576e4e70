"""Electronic signatures (21 CFR 11.50, 11.70, 11.200; issue #6), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli import main
from ledger.application import access, signatures, verification
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import ActionRefused, RecordSigned
from ledger.storage.transcoder import decode_state
from tests import lines as L
from tests.staff import PASSPHRASE, staffed, store
from tests.test_tamper import Attacker, edited

START = dt.datetime(2015, 6, 1, 9, 0, tzinfo=dt.UTC)


def ticking() -> Callable[[], dt.datetime]:
    """A clock one minute later at every reading."""
    minutes = itertools.count()
    return lambda: START + dt.timedelta(minutes=next(minutes))


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return TrialLedger(store_url, clock=ticking())


@pytest.fixture
def keys(ledger: TrialLedger, tmp_path: Path) -> dict[str, Path]:
    """Every role registered, then NFH-001 treated and one CMV result."""
    people = staffed(ledger, tmp_path)
    store(ledger, [*L.treated("NFH-001"), L.cmv("NFH-001", id="NFH-001-cmv1")])
    return people


def sign(ledger: TrialLedger, keys: dict[str, Path], who: str, meaning: str) -> RecordSigned:
    return signatures.sign(ledger, who, "NFH-001", meaning, keys[who], PASSPHRASE)


def test_a_signature_names_signer_time_and_meaning_and_covers_every_event(
    ledger: TrialLedger, keys: dict[str, Path]
) -> None:
    record = sign(ledger, keys, "nfh.pi", "investigator_attestation")
    [entry] = [e for e in ledger.entries() if e.record.id == record.id]
    assert (record.id, record.user, record.meaning) == ("NFH-001#5", "nfh.pi", "investigator_attestation")
    assert record.signed_at == entry.recorded_at and record.signed_at.tzinfo == dt.UTC
    seal = ledger.recorder.seal  # type: ignore[attr-defined]
    leaves = seal.participant_leaves(ledger.recorder.datastore, "NFH-001")  # type: ignore[attr-defined]
    assert record.covers == [(eid, leaf.hex()) for eid, leaf in leaves[:-1]]
    assert [eid for eid, _ in record.covers] == ["NFH-001-scr", "NFH-001-enr", "NFH-001-inf1", "NFH-001-cmv1"]
    [check] = signatures.check(ledger)
    assert check.to_json() == {
        "signature": "NFH-001#5",
        "participant": "NFH-001",
        "signer": "nfh.pi",
        "full_name": "Nfh Pi",
        "meaning": "investigator_attestation",
        "signed_at": record.signed_at.isoformat().replace("+00:00", "Z"),
        "covers": 4,
        "status": "valid",
        "problem": None,
        "not_covered": [],
    }


def test_later_signatures_do_not_supersede_earlier_ones(ledger: TrialLedger, keys: dict[str, Path]) -> None:
    sign(ledger, keys, "nfh.nurse", "reviewed")
    second = sign(ledger, keys, "dm", "approved")
    assert len(second.covers) == 4  # signatures are not part of what a signature covers
    assert [c.status for c in signatures.check(ledger)] == ["valid", "valid"]


def test_data_changed_after_signing_is_not_covered(ledger: TrialLedger, keys: dict[str, Path]) -> None:
    signed = sign(ledger, keys, "nfh.pi", "approved")
    store(ledger, [L.correction("NFH-001-cmv1", {"value_iu_ml": 5500})])
    [check] = signatures.check(ledger)
    assert (check.status, check.problem, check.not_covered) == ("superseded", None, ("NFH-001#6",))
    store(ledger, [L.disease("NFH-001")])
    assert signatures.check(ledger)[0].not_covered == ("NFH-001#6", "NFH-001#7")
    [then] = signatures.check(ledger, known_at=signed.signed_at)
    assert then.status == "valid"


def tamper(ledger: TrialLedger, version: int, **changes: Any) -> None:
    """Rewrite NFH-001's stored event ``version`` in the SQLite file, as an attacker would."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with ledger.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        where = f"WHERE originator_id = 'NFH-001' AND originator_version = {version}"
        cursor.execute(f"SELECT state FROM {table} {where}")
        stored = decode_state(cursor.fetchone()[0])
        changed = msgspec.structs.replace(stored, record=msgspec.structs.replace(stored.record, **changes))
        cursor.execute(f"UPDATE {table} SET state = ? {where}", (msgspec.msgpack.encode(changed),))


@pytest.mark.parametrize(
    ("version", "changes", "problem"),
    [
        (3, {"cells_per_kg": 2e6}, "signed event NFH-001-inf1 was changed after signing (hash mismatch)"),
        (4, {"meaning": "investigator_attestation"}, "the signature does not match what it claims to sign"),
    ],
)
def test_tampering_invalidates_the_signature(
    sqlite_url: str, tmp_path: Path, version: int, changes: dict[str, Any], problem: str
) -> None:
    ledger = TrialLedger(sqlite_url)
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE)
    assert signatures.check(ledger)[0].status == "valid"
    tamper(ledger, version, **changes)
    [check] = signatures.check(ledger)
    assert check.status == "invalid" and check.problem is not None and check.problem.startswith(problem)
    code, out, _ = run(sqlite_url, "signatures")
    assert code == 1 and "INVALID" in out


@pytest.mark.parametrize(
    ("who", "meaning", "problem"),
    [
        ("nfh.nurse", "investigator_attestation", r"nfh.nurse \(site_staff\) may not sign the investigator"),
        ("amms.pi", "approved", r"amms.pi \(investigator of AMMS\) may not act for site NFH"),
        ("monitor", "reviewed", r"monitor \(monitor\) may not sign as reviewed"),
        ("auditor", "approved", r"auditor \(auditor\) may not sign as approved"),
    ],
)
def test_who_may_sign_what(
    ledger: TrialLedger, keys: dict[str, Path], who: str, meaning: str, problem: str
) -> None:
    with pytest.raises(Refused, match=problem):
        sign(ledger, keys, who, meaning)
    refused = [e.record for e in ledger.entries() if isinstance(e.record, ActionRefused)]
    assert [(r.user, r.action, r.participant) for r in refused] == [(who, f"sign {meaning}", "NFH-001")]
    assert not signatures.check(ledger)


def test_signing_needs_the_signers_own_key_and_passphrase(ledger: TrialLedger, keys: dict[str, Path]) -> None:
    with pytest.raises(Refused, match="wrong passphrase"):
        signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], "not the passphrase")
    with pytest.raises(Refused, match=r"is not the registered key of nfh\.pi"):
        signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["dm"], PASSPHRASE)
    with pytest.raises(Refused, match="'intruder' is not registered"):
        signatures.sign(ledger, "intruder", "NFH-001", "approved", keys["dm"], PASSPHRASE)
    with pytest.raises(InvalidInput, match="key-file: cannot read"):
        signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["dm"].with_name("none.pem"), PASSPHRASE)
    with pytest.raises(InvalidInput, match="meaning: expected one of"):
        sign(ledger, keys, "nfh.pi", "seen")
    with pytest.raises(InvalidInput, match="participant: NFH-404 is not in the ledger"):
        signatures.sign(ledger, "nfh.pi", "NFH-404", "approved", keys["nfh.pi"], PASSPHRASE)
    assert len([e for e in ledger.entries() if isinstance(e.record, ActionRefused)]) == 3


def test_an_open_ledger_has_no_signers(store_url: str, tmp_path: Path) -> None:
    ledger = TrialLedger(store_url)
    store(ledger, L.treated("NFH-001"), user="anyone")
    key = tmp_path / "anyone.pem"
    signatures.new_key(key, PASSPHRASE)
    with pytest.raises(Refused, match="signing needs a registered user and key"):
        signatures.sign(ledger, "anyone", "NFH-001", "reviewed", key, PASSPHRASE)


def test_the_private_key_stays_encrypted_with_the_passphrase(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "someone.pem"
    public = signatures.new_key(key, PASSPHRASE)
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key.read_bytes(), None)
    with pytest.raises(InvalidInput, match="already exists"):
        signatures.new_key(key, PASSPHRASE)
    with pytest.raises(InvalidInput, match="at least 8 characters"):
        signatures.new_key(tmp_path / "short.pem", "short")
    opened = serialization.load_pem_private_key(key.read_bytes(), PASSPHRASE.encode())
    assert isinstance(opened, Ed25519PrivateKey) and signatures.public_hex(opened) == public


def test_a_key_is_its_owners_alone(ledger: TrialLedger, tmp_path: Path) -> None:
    """Issue 12, item 6: made and registered under the owner's login, one owner per key."""
    keys = staffed(ledger, tmp_path)
    private = Ed25519PrivateKey.generate()
    assert signatures.register_key(ledger, "nfh.pi", signatures.public_hex(private)).startswith("USERS#")
    # Someone else's key cannot be registered as one's own...
    with pytest.raises(Refused, match=r"this key is already registered to nfh\.pi"):
        signatures.register_key(ledger, "nfh.nurse", signatures.public_hex(private))
    # ...and nobody makes a key for a user who is not registered (nothing is left behind).
    with pytest.raises(Refused, match="user 'stranger' is not registered"):
        signatures.make_key(ledger, "stranger", tmp_path / "stranger.pem", PASSPHRASE)
    assert not (tmp_path / "stranger.pem").exists()
    # The key in force is the latest: the one made with `key new` no longer signs.
    store(ledger, L.treated("NFH-001"))
    with pytest.raises(Refused, match=r"is not the registered key of nfh\.pi"):
        signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE)
    refused = [
        (e.record.user, e.record.action) for e in ledger.entries() if isinstance(e.record, ActionRefused)
    ]
    assert refused == [("nfh.nurse", "key new"), ("stranger", "key new"), ("nfh.pi", "sign approved")]


def test_a_signature_made_before_a_new_key_still_verifies(ledger: TrialLedger, tmp_path: Path) -> None:
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE)
    signatures.make_key(ledger, "nfh.pi", tmp_path / "nfh.pi-2.pem", PASSPHRASE)
    signatures.sign(ledger, "nfh.pi", "NFH-001", "reviewed", tmp_path / "nfh.pi-2.pem", PASSPHRASE)
    assert [c.status for c in signatures.check(ledger)] == ["valid", "valid"]


def test_a_user_without_a_key_cannot_sign(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    access.register(ledger, "dm", name="zsh.pi", full_name="Z Pi", role="investigator", user_site="ZSH")
    store(ledger, L.treated("ZSH-001"), user="dm")
    key = tmp_path / "elsewhere.pem"
    signatures.new_key(key, PASSPHRASE)
    with pytest.raises(
        Refused, match=r"zsh\.pi has no registered key: make your own with `trial-ledger key new`"
    ):
        signatures.sign(ledger, "zsh.pi", "ZSH-001", "approved", key, PASSPHRASE)


def run(store_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", store_url, *args], env={"TL_PASS": PASSPHRASE})
    return result.exit_code, result.stdout, result.stderr


def test_command_line_sign_and_check(store_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")

    def key(name: str) -> list[str]:
        return ["--key-file", str(tmp_path / f"{name}.pem"), "--passphrase-file", str(secret)]

    for name, role, site in (("dm", "data_manager", None), ("nfh.pi", "investigator", "NFH")):
        where = ["--site", site] if site else []
        code, _, err = run(store_url, "--user", "dm", "user", "add", name, "--role", role, *where,
                           "--full-name", name.upper())  # fmt: skip
        assert code == 0, err
        # Each user makes their own key under their own login (issue 12, item 6).
        code, out, err = run(store_url, "--user", name, "--json", "key", "new", *key(name))
        assert code == 0, err
        assert json.loads(out)["key_file"] == str(tmp_path / f"{name}.pem")
    store(TrialLedger(store_url), L.treated("NFH-001"), user="nfh.pi")
    sign = ["--user", "nfh.pi", "sign", "NFH-001", "--meaning"]
    code, out, err = run(store_url, "--json", *sign, "investigator_attestation", *key("nfh.pi"))
    assert code == 0, err
    signed = json.loads(out)
    assert signed["covers"] == ["NFH-001-scr", "NFH-001-enr", "NFH-001-inf1"]
    assert signed["signed_at"].endswith("Z") and signed["signer"] == "nfh.pi"
    code, _, err = run(store_url, *sign, "approved", *key("dm"))
    assert code == 3 and "not the registered key of nfh.pi" in err
    code, _, err = run(store_url, *sign, "approved", "--key-file", str(tmp_path / "nfh.pi.pem"),
                       "--passphrase-env", "TL_PASS")  # fmt: skip
    assert code == 0, err
    code, out, _ = run(store_url, "--json", "signatures", "NFH-001")
    assert code == 0 and [s["status"] for s in json.loads(out)["signatures"]] == ["valid", "valid"]
    store(TrialLedger(store_url), [L.void("NFH-001-inf1")], user="nfh.pi")
    code, out, _ = run(store_url, "signatures")
    assert code == 0 and "superseded: not covering NFH-001#6" in out


def test_verify_fails_on_a_sealed_signature_that_does_not_verify(store_url: str, tmp_path: Path) -> None:
    """A signature stored with a valid seal but made with the wrong key: the chain is fine, verify is not."""
    from ledger.application.access import checked

    ledger = TrialLedger(store_url)
    staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    assert run(store_url, "verify")[0] == 0
    participant = ledger.repository.get("NFH-001")
    at = dt.datetime.now(dt.UTC)
    forged = checked(
        RecordSigned,
        {
            "participant": "NFH-001",
            "meaning": "approved",
            "signed_at": at,
            "covers": [],
            "user": "nfh.pi",
            "site": "NFH",
            "signature": Ed25519PrivateKey.generate().sign(b"something else").hex(),
        },
    )
    event_id = participant.append(forged, ledger.protocol, at)
    ledger.save(participant)
    code, out, _ = run(store_url, "--json", "verify")
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False and result["first_bad"]["event_id"] == event_id
    assert "signature does not match" in result["first_bad"]["problem"]


def test_verify_names_a_signed_event_rewritten_with_its_whole_seal(store_url: str, tmp_path: Path) -> None:
    """A consistent rewrite of a signed event (every later leaf, chain hash and the head recomputed) passes
    the seal; the signature, checked from the leaves the seal recomputes (issue 14), still names it."""
    ledger = TrialLedger(store_url)
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE)
    attacker = Attacker(store_url)
    position = next(p for p, event_id in attacker.rows() if event_id == "NFH-001-inf1")
    attacker.set_state(position, edited(attacker.event(position)[3], cells_per_kg=2e6))
    attacker.reseal(position)
    attacker.close()
    code, out, _ = run(store_url, "--json", "verify")
    result = json.loads(out)
    assert code == 1 and result["size"] == ledger.recorder.max_notification_id()
    changed = "signed event NFH-001-inf1 was changed after signing (hash mismatch)"
    assert result["first_bad"]["problem"] == changed
    [invalid] = result["signatures"]["invalid"]
    assert invalid["participant"] == "NFH-001" and invalid["status"] == "invalid"


def test_two_halves_of_a_signed_ledger_check_its_signatures_as_one_pass_does(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The users, their keys and the signed events may fall in either half (issue 14): wherever the
    halves meet, a valid signature stays valid and a rewritten signed event is named."""
    ledger = TrialLedger(pg_url)
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE)
    store(ledger, L.treated("NFH-002"))
    signatures.sign(ledger, "nfh.pi", "NFH-002", "reviewed", keys["nfh.pi"], PASSPHRASE)
    attacker = Attacker(pg_url)
    positions = [position for position, _ in attacker.rows()]

    def verdicts() -> list[dict[str, Any]]:
        found = []
        for half in [None, *positions[:-1]]:
            monkeypatch.setattr(verification, "_half", lambda snap, half=half: half)
            found.append(verification.verify_ledger(ledger).to_json())
        return found

    valid = verdicts()
    assert valid[0]["ok"] and all(verdict == valid[0] for verdict in valid)
    position = next(p for p, event_id in attacker.rows() if event_id == "NFH-001-inf1")
    attacker.set_state(position, edited(attacker.event(position)[3], cells_per_kg=2e6))
    attacker.reseal(position)
    attacker.close()
    invalid = verdicts()
    assert [row["participant"] for row in invalid[0]["signatures"]["invalid"]] == ["NFH-001"]
    assert all(verdict == invalid[0] for verdict in invalid)
