"""The library's compressor turned on: every path still reads the ledger (issue 13, storage seam).

With ``COMPRESSOR_TOPIC`` set to the eventsourcing library's zlib compressor,
the mapper compresses every stored state.  The paths that read stored bytes
themselves (``entries()``, the read model, ``audit``, ``verify``, the seal's
content hash and lock) read them through :class:`ledger.storage.codec.Codec`,
so import, status, audit, verify and the ODM export give what they give on an
uncompressed store, while the seal covers the compressed bytes as stored.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.storage.scan import snapshot
from tests import lines as L
from tests.staff import generated
from tests.test_tamper import Attacker

ZLIB = "eventsourcing.compressor:ZlibCompressor"
# Keys of the outputs that hold recording times.
TIMES = {"recorded_at", "known_at", "since", "created"}


def cli(store_url: str, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(main, ["--store", store_url, "--user", "dm", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def main_paths(store_url: str, tmp_path: Path) -> dict[str, Any]:
    """Import a simulated trial, lock and unlock, then what status, audit, verify and ODM say."""
    ledger = TrialLedger(store_url)
    generated(ledger, 6)
    access.lock(ledger, "dm", "interim analysis")
    access.unlock(ledger, "dm", "done")
    ledger.record(L.as_lines([L.cmv("NFH-001", id="after-unlock")]), user="dm")
    ledger.record(L.as_lines([L.cmv("NFH-001", id="after-unlock")]), user="dm")  # a retry: skipped
    out = tmp_path / "trial.odm.xml"
    results = {
        "status": cli(store_url, "status", "--as-of", "2016-12-31"),
        "audit": cli(store_url, "audit"),
        "verify": cli(store_url, "verify"),
        "odm": cli(store_url, "export", "odm", str(out)),
    }
    results["odm_subjects"] = out.read_text().count("<SubjectData ")
    return results


def _without_times(value: Any) -> Any:
    """The output with recording times left out (two stores are never written at the same instant)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_every_main_path_works_with_the_librarys_zlib_compressor(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "zlib").mkdir()
    plain_url = str(tmp_path / "plain" / "ledger.db")
    plain = main_paths(plain_url, tmp_path / "plain")
    monkeypatch.setenv("COMPRESSOR_TOPIC", ZLIB)
    compressed = main_paths(store_url, tmp_path / "zlib")
    ledger = TrialLedger(store_url)
    assert ledger.codec.compressor is not None
    with snapshot(ledger) as snap:
        states = [state for _, _, state in snap.events()]
    assert all(zlib.decompress(state) for state in states), "every stored state is zlib-compressed"
    assert [compressed[k][0] for k in ("status", "audit", "verify", "odm")] == [0, 0, 0, 0]
    assert compressed["verify"][1]["ok"] is True
    assert compressed["verify"][1]["size"] == len(states)
    assert _without_times(compressed["status"][1]) == _without_times(plain["status"][1])
    assert _without_times(compressed["audit"][1]) == _without_times(plain["audit"][1])
    assert compressed["odm_subjects"] == plain["odm_subjects"] > 0


def test_the_seal_covers_the_compressed_bytes_as_stored(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPRESSOR_TOPIC", ZLIB)
    ledger = TrialLedger(store_url)
    ledger.record(L.as_lines([*L.treated("NFH-001"), L.cmv("NFH-001", id="cmv-1")]), user="nfh.nurse")
    attacker = Attacker(store_url)
    position, event_id = attacker.rows()[2]
    _, _, _, state = attacker.event(position)
    # The same record, compressed another way: what it says is unchanged, the stored bytes are not.
    attacker.set_state(position, zlib.compress(zlib.decompress(state), 1))
    attacker.close()
    code, verdict = cli(store_url, "verify")
    assert code == 1
    assert (verdict["first_bad"]["position"], verdict["first_bad"]["event_id"]) == (position, event_id)
