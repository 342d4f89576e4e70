"""``digest``, ``prove`` and ``verify-proof`` (SPEC section 5): an auditor checks without trusting us.

- the published root matches an independent RFC 6962 implementation computed
  from the stored rows (plain SQL and ``msgpack``, nothing from the ledger);
- an inclusion proof of every event of a random ledger verifies against the
  published digest, and fails when any byte of it changes;
- consistency proofs from every older size verify, and fail when any byte changes;
- with the store deleted, a printed proof still verifies against the digest,
  and the checker needs nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgpack
import pytest
from click.testing import CliRunner

from cli import main
from ledger.application.proofs import consistency, inclusion
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import current_digest
from ledger.evidence.proofcheck import check_proof, read_entry
from ledger.storage.stores import is_postgres
from tests.test_tamper import Attacker, build_trial, edited, trial_batches

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- an independent RFC 6962 Merkle tree hash ---------------------------------------------------


def rfc6962_root(entries: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1, recursive, over raw entries."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(entries[:k]) + rfc6962_root(entries[k:])).digest()


def stored_entries(path: str) -> list[bytes]:
    """The canonical bytes of every stored event, rebuilt from the SQLite rows directly."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
        ).fetchall()
    return [msgpack.packb(list(row), use_bin_type=True) for row in rows]


@pytest.fixture(scope="module")
def random_ledger(tmp_path_factory: pytest.TempPathFactory) -> TrialLedger:
    """A random trial of a size that is not a power of two (module-wide: proofs only read)."""
    store = str(tmp_path_factory.mktemp("proofs") / "trial.db")
    ledger = build_trial(store, seed=11, participants=14)
    assert (ledger.recorder.max_notification_id() or 0) & ((ledger.recorder.max_notification_id() or 0) - 1)
    return ledger


def test_the_published_root_matches_an_independent_implementation(random_ledger: TrialLedger) -> None:
    entries = stored_entries(random_ledger.store)
    code, out, _ = cli("--store", random_ledger.store, "digest", "--json")
    assert code == 0
    assert json.loads(out) == {"size": len(entries), "root": rfc6962_root(entries).hex()}
    for size in (1, 2, 3, 7, 8, 9, len(entries) - 1):
        assert consistency(random_ledger, 0, size)["root"] == rfc6962_root(entries[:size]).hex()


def test_an_inclusion_proof_of_every_event_verifies(random_ledger: TrialLedger) -> None:
    digest = current_digest(random_ledger).to_json()
    entries = stored_entries(random_ledger.store)
    ids = [read_entry(entry).event_id for entry in entries]
    for index, event_id in enumerate(ids):
        assert event_id is not None
        doc = json.loads(json.dumps(inclusion(random_ledger, event_id)))
        ok, message = check_proof(doc, digest)
        assert ok, message
        assert doc["index"] == index and doc["event"]["position"] == index + 1
        assert doc["event"]["event_id"] == event_id
        assert bytes.fromhex(doc["event"]["entry"]) == entries[index]
        assert doc["leaf_hash"] == hashlib.sha256(b"\x00" + entries[index]).hexdigest()


def flips(value: str) -> list[str]:
    """``value`` (hex) with each byte in turn changed."""
    raw = bytes.fromhex(value)
    return [(raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]).hex() for i in range(len(raw))]


def mutations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way of changing one byte of a hash, one number, or one readable field of a proof."""
    out: list[dict[str, Any]] = []
    for key in ("leaf_hash", "root", "old_root"):
        if key in doc:
            out += [{**doc, key: changed} for changed in flips(doc[key])]
    for i, node in enumerate(doc["path"]):
        out += [
            {**doc, "path": [*doc["path"][:i], changed, *doc["path"][i + 1 :]]} for changed in flips(node)
        ]
    out.append({**doc, "path": [*doc["path"], "00" * 32]})
    if doc["path"]:
        out.append({**doc, "path": doc["path"][:-1]})
    for key in ("index", "size", "old_size"):
        if key in doc:
            out += [{**doc, key: doc[key] + 1}] + ([{**doc, key: doc[key] - 1}] if doc[key] else [])
    event = doc.get("event")
    if event:
        out += [{**doc, "event": {**event, "entry": changed}} for changed in flips(event["entry"])]
        for key, value in event.items():
            if key == "entry":
                continue
            wrong: Any = value + 1 if isinstance(value, int) else f"{value}x"
            out.append({**doc, "event": {**event, key: wrong}})
        for key in event["record"]:
            record = {**event["record"], key: "tampered"}
            out.append({**doc, "event": {**event, "record": record}})
    return out


def test_an_inclusion_proof_fails_when_any_byte_changes(random_ledger: TrialLedger) -> None:
    digest = current_digest(random_ledger).to_json()
    ids = [read_entry(entry).event_id for entry in stored_entries(random_ledger.store)]
    infusion = next(i for i in ids if i and i.endswith("/inf1"))
    for event_id in (ids[0], infusion, ids[-1]):  # a screening, an infusion, the last event
        assert event_id is not None
        doc = inclusion(random_ledger, event_id)
        assert check_proof(doc, digest)[0]
        for changed in mutations(doc):
            assert not check_proof(changed, digest)[0], changed
        other = {"size": digest["size"], "root": flips(digest["root"])[0]}
        assert not check_proof(doc, other)[0]


def test_consistency_proofs_from_every_older_size(random_ledger: TrialLedger) -> None:
    entries = stored_entries(random_ledger.store)
    new = {"size": len(entries), "root": rfc6962_root(entries).hex()}
    for old_size in range(len(entries) + 1):
        old = {"size": old_size, "root": rfc6962_root(entries[:old_size]).hex()}
        doc = consistency(random_ledger, old_size)
        assert check_proof(doc, old)[0] and check_proof(doc, new)[0]
        if 0 < old_size < len(entries):
            for changed in mutations(doc):
                assert not check_proof(changed, old)[0] or not check_proof(changed, new)[0], changed


# -- the commands ---------------------------------------------------------------------------


def delete_store(url: str) -> None:
    """Remove the store entirely: the SQLite file, or the PostgreSQL schema."""
    if is_postgres(url):
        import psycopg

        parts = urlparse(url)
        with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{parse_qs(parts.query)["schema"][0]}" CASCADE')
    else:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(url + suffix):
                os.remove(url + suffix)


def test_an_inclusion_proof_verifies_with_the_store_deleted(store_url: str, tmp_path: Path) -> None:
    build_trial(store_url, participants=4).close()
    digest, proof = tmp_path / "digest.json", tmp_path / "proof.json"
    assert cli("--store", store_url, "digest", "--out", str(digest))[0] == 0
    attacker = Attacker(store_url)
    event_id = attacker.rows()[6][1]
    attacker.close()
    code, out, _ = cli("--store", store_url, "prove", event_id, "--out", str(proof))
    assert code == 0
    assert json.loads(out) == json.loads(proof.read_text())
    assert json.loads(out)["kind"] == "inclusion" and json.loads(out)["event"]["event_id"] == event_id
    delete_store(store_url)
    code, out, _ = cli("verify-proof", str(proof), "--digest", str(digest), "--json")
    assert code == 0, out
    assert json.loads(out)["ok"] is True
    code, out, _ = cli("verify-proof", str(proof), "--digest", str(digest))
    assert code == 0 and out.startswith("VALID: ")


def test_an_old_digest_is_proven_consistent_with_the_grown_ledger(store_url: str, tmp_path: Path) -> None:
    ledger = build_trial(store_url, seed=4, participants=3)
    old, new, proof = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "consistency.json"
    cli("--store", store_url, "digest", "--out", str(old))
    for user, records in trial_batches(5, 3, first=100):
        ledger.record(records, user=user)
    cli("--store", store_url, "digest", "--out", str(new))
    old_size = json.loads(old.read_text())["size"]
    code, out, _ = cli("--store", store_url, "prove", "--from-size", str(old_size), "--out", str(proof))
    assert code == 0 and json.loads(out)["kind"] == "consistency"
    code, out, _ = cli("verify-proof", str(proof), "--digest", str(old), "--digest", str(new), "--json")
    assert code == 0, out
    assert json.loads(out)["ok"] is True and len(json.loads(out)["messages"]) == 2
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"size": old_size, "root": flips(json.loads(old.read_text())["root"])[5]}))
    assert cli("verify-proof", str(proof), "--digest", str(forged), "--digest", str(new))[0] == 1


def test_a_changed_proof_is_rejected_by_the_command(sqlite_url: str, tmp_path: Path) -> None:
    build_trial(sqlite_url, participants=2).close()
    digest, proof = tmp_path / "digest.json", tmp_path / "proof.json"
    cli("--store", sqlite_url, "digest", "--out", str(digest))
    event_id = Attacker(sqlite_url).rows()[3][1]
    cli("--store", sqlite_url, "prove", event_id, "--out", str(proof))
    doc = json.loads(proof.read_text())
    doc["event"]["record"]["user"] = "mallory"
    proof.write_text(json.dumps(doc))
    code, out, _ = cli("verify-proof", str(proof), "--digest", str(digest), "--json")
    assert code == 1 and json.loads(out)["ok"] is False
    proof.write_text("{not json")
    assert cli("verify-proof", str(proof))[0] == 2
    proof.write_text(json.dumps({"kind": "inclusion"}))
    assert cli("verify-proof", str(proof))[0] == 2


def test_prove_refuses_what_it_can_see_is_wrong(sqlite_url: str) -> None:
    build_trial(sqlite_url, participants=2).close()
    attacker = Attacker(sqlite_url)
    position, event_id = attacker.rows()[2]
    assert cli("--store", sqlite_url, "prove", event_id)[0] == 0
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    code, _, err = cli("--store", sqlite_url, "prove", event_id)
    assert code == 1 and "run verify" in err
    attacker.sql("UPDATE ledger_entries SET leaf_hash = ? WHERE position = 1", (bytes(32),))
    code, _, err = cli("--store", sqlite_url, "prove", "--from-size", "1")
    assert code == 1 and "run verify" in err


def test_prove_usage_errors(sqlite_url: str) -> None:
    build_trial(sqlite_url, participants=2).close()
    event_id = Attacker(sqlite_url).rows()[0][1]
    assert cli("--store", sqlite_url, "prove")[0] == 2
    assert cli("--store", sqlite_url, "prove", event_id, "--from-size", "1")[0] == 2
    code, _, err = cli("--store", sqlite_url, "prove", "NOPE-1")
    assert code == 2 and "NOPE-1" in err
    assert cli("--store", sqlite_url, "prove", event_id, "--size", "100000")[0] == 2
    assert cli("--store", sqlite_url, "prove", "--from-size", "100000")[0] == 2
    code, out, _ = cli("--store", sqlite_url, "prove", event_id, "--size", "3")
    assert code == 0 and json.loads(out)["size"] == 3


def test_the_checker_needs_only_the_standard_library(sqlite_url: str, tmp_path: Path) -> None:
    """Copy the two checker files alone and run them with no site-packages at all."""
    build_trial(sqlite_url, participants=2).close()
    digest, proof = tmp_path / "digest.json", tmp_path / "proof.json"
    cli("--store", sqlite_url, "digest", "--out", str(digest))
    cli("--store", sqlite_url, "prove", Attacker(sqlite_url).rows()[4][1], "--out", str(proof))
    kit = tmp_path / "kit" / "ledger" / "evidence"
    kit.mkdir(parents=True)
    for package in (kit.parent, kit):
        (package / "__init__.py").write_text("")
    for name in ("merkle.py", "proofcheck.py"):
        shutil.copy(ROOT / "ledger" / "evidence" / name, kit / name)
    # -S: no site-packages (no msgpack, not this project); -E: no PYTHONPATH
    command = [sys.executable, "-S", "-E", "-s", "-m", "ledger.evidence.proofcheck", str(proof), str(digest)]
    done = subprocess.run(command, cwd=kit.parent.parent, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "leaf is event" in done.stdout
    doc = json.loads(proof.read_text())
    doc["path"][0] = flips(doc["path"][0])[0]
    proof.write_text(json.dumps(doc))
    done = subprocess.run(command, cwd=kit.parent.parent, capture_output=True, text=True, check=False)
    assert done.returncode == 1
