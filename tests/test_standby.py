"""Every read command runs for a SELECT-only login and on a hot standby, with the primary's output (issue 12).

A throwaway primary and its streaming standby (:mod:`tests.replicas`): the
ledger is made on the primary by its owner, a monitor login (SELECT only) is
registered, and each read command is run three times: by the owner on the
primary, by the monitor on the primary, by the monitor on the standby.  The
three outputs, and the files written, are the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cli import main
from tests.replicas import Replicas, replica_pair

SCHEMA = "trial"
MONITOR = "monitor.rossi"
# Each read command (``{p}``: a participant of the demo; ``{k}``: a moment after the ledger was made),
# with what it writes under ``{out}``.
KNOWN = ["--known-at", "{k}"]
READS: dict[str, list[str]] = {
    "status": ["status", *KNOWN],
    "status-one": ["status", "{p}", *KNOWN],
    "endpoints": ["endpoints", *KNOWN],
    "verify": ["verify"],
    "report": ["report", "--out", "{out}/report", *KNOWN],
    "audit": ["audit", "{p}", *KNOWN],
    "digest": ["digest"],
    "prove": ["prove", "--from-size", "10"],
    "export-odm": ["export", "odm", "{out}/odm.xml", *KNOWN],
    "export-sdtm": ["export", "sdtm", "{out}/sdtm", *KNOWN],
    "signatures": ["signatures", *KNOWN],
    "protocol-show": ["protocol", "show", *KNOWN],
    "coding": ["coding", *KNOWN],
}


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture(scope="module")
def replicas(pg_ready: bool) -> Iterator[Replicas]:
    with replica_pair() as pair:
        primary = pair.url(pair.primary_port)
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
        owner = pair.url(pair.primary_port, schema=SCHEMA)
        assert run(["--store", owner, "init"])[0] == 0
        code, output = run(["--store", owner, "demo", "--participants", "12"])
        assert code == 0, output
        key = {"HOME": str(pair.place)}
        add = ["user", "add"]
        code, output = run(
            ["--store", owner, *add, "dm.lee", "--role", "data_manager", "--full-name", "D L"], key
        )
        assert code == 0, output
        dm = pair.url(pair.primary_port, "dm.lee", SCHEMA)
        code, output = run(["--store", dm, *add, MONITOR, "--role", "monitor", "--full-name", "M R"], key)
        assert code == 0, output
        code, output = run(["--store", owner, "--json", "status"])
        assert code == 0, output
        pair.participant = json.loads(output)["participants"][0]["participant"]
        pair.known_at = dt.datetime.now(dt.UTC).isoformat()
        pair.caught_up()
        yield pair


# When a file was made (ODM and Define-XML creation times, export.json's "created", the SAS
# XPORT headers, the report's "Generated"): what differs between two runs of the same export.
MADE_AT = re.compile(
    rb'(CreationDateTime|FileOID)="[^"]*"|"created": "[^"]*"|\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d'
    rb"|<dt>Generated</dt><dd>[^<]*</dd>"
)


def _outputs(
    args: list[str], store: str, out: Path, participant: str, known_at: str
) -> tuple[int, bytes, dict[str, str]]:
    """Exit code, output and the hash of each file written, without where, from which store and when."""
    out.mkdir(parents=True)
    args = [a.replace("{out}", str(out)).replace("{p}", participant).replace("{k}", known_at) for a in args]
    code, text = run(["--store", store, "--json", *args])

    def same(data: bytes) -> bytes:
        return MADE_AT.sub(b"", data.replace(str(out).encode(), b"{out}").replace(store.encode(), b"{store}"))

    files = {
        str(p.relative_to(out)): hashlib.sha256(same(p.read_bytes())).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    return code, same(text.encode()), files


@pytest.mark.parametrize("command", list(READS))
def test_a_read_command_answers_alike_for_a_select_only_login_and_on_the_standby(
    replicas: Replicas, command: str, tmp_path: Path
) -> None:
    owner = replicas.url(replicas.primary_port, schema=SCHEMA)
    monitor = replicas.url(replicas.primary_port, MONITOR, SCHEMA)
    standby = replicas.url(replicas.standby_port, MONITOR, SCHEMA)
    expected = _outputs(READS[command], owner, tmp_path / "owner", replicas.participant, replicas.known_at)
    assert expected[0] in (0, 1), expected[1]
    assert (
        _outputs(READS[command], monitor, tmp_path / "monitor", replicas.participant, replicas.known_at)
        == expected
    )
    assert (
        _outputs(READS[command], standby, tmp_path / "standby", replicas.participant, replicas.known_at)
        == expected
    )


def test_the_standby_refuses_every_write_and_the_monitor_too(replicas: Replicas) -> None:
    """A monitor's refused attempt is on record on the primary (issue 12, item 7); a standby keeps none."""
    owner = replicas.url(replicas.primary_port, schema=SCHEMA)

    def refusals() -> list[str]:
        code, text = run(["--store", owner, "--json", "audit"])
        assert code == 0, text
        return [row["user"] for row in json.loads(text)["entries"] if row["type"] == "ActionRefused"]

    before = refusals()
    standby = replicas.url(replicas.standby_port, "dm.lee", SCHEMA)
    code, text = run(["--store", standby, "lock", "--reason", "interim"])
    assert code == 3, text
    assert "read-only" in text
    # The refusal stands on the standby, where it cannot be recorded.
    on_standby = replicas.url(replicas.standby_port, MONITOR, SCHEMA)
    code, text = run(["--store", on_standby, "lock", "--reason", "interim"])
    assert (code, text) == (3, f"error: {MONITOR} (monitor) may not lock the ledger\n")
    assert refusals() == before
    monitor = replicas.url(replicas.primary_port, MONITOR, SCHEMA)
    code, text = run(["--store", monitor, "lock", "--reason", "interim"])
    assert (code, text) == (3, f"error: {MONITOR} (monitor) may not lock the ledger\n")
    assert refusals() == [*before, MONITOR]
    replicas.caught_up()  # the reads compared with the standby's see the same ledger
