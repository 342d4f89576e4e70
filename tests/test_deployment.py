"""The README's "Deploying for several sites" runs as printed, on a primary and its standby (issue 12).

Every command of the section's ``sh`` blocks runs in order against a throwaway
cluster pair (:mod:`tests.replicas`), with the section's two hosts replaced by
the pair's ports; what the README says is refused must be refused, by the
ledger or by PostgreSQL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.replicas import Replicas, replica_pair

README = Path(__file__).resolve().parents[1] / "README.md"
PRIMARY, STANDBY = "PGHOST=db.hospital.example PGPORT=5432", "PGHOST=standby.hospital.example"


def deployment_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Deploying for several sites", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pair(pg_ready: bool) -> Iterator[Replicas]:
    with replica_pair() as replicas:
        yield replicas


def test_the_deployment_section_runs_as_printed(pair: Replicas, tmp_path: Path) -> None:
    commands = deployment_commands()
    assert any(PRIMARY in c for c in commands) and any(STANDBY in c for c in commands)
    primary = f"PGHOST=127.0.0.1 PGPORT={pair.primary_port}"
    standby = f"PGHOST=127.0.0.1 PGPORT={pair.standby_port}"
    ask = "psql -h 127.0.0.1 -U postgres -d postgres -tAc"
    # Before the first read on the standby, it has replayed what the primary committed.
    wait = (
        f'lsn=$({ask} "SELECT pg_current_wal_lsn()" -p {pair.primary_port}); '
        f'until [ "$({ask} "SELECT pg_last_wal_replay_lsn() >= \'$lsn\'" -p {pair.standby_port})" = t ]; '
        "do sleep 0.1; done"
    )
    lines = []
    for index, command in enumerate(commands):
        if STANDBY in command and wait not in lines:
            lines.append(wait)
        lines += [f"echo '$ {index}'", command.replace(PRIMARY, primary).replace(STANDBY, standby)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIAL_LEDGER_", "PG"))}
    env |= {"PATH": str(Path(sys.executable).parent) + os.pathsep + env["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + "\n".join(lines)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ran = re.findall(r"^\$ (\d+)$", done.stdout, flags=re.M)
    failed_at = commands[int(ran[-1])] if ran else commands[0]
    assert done.returncode == 0, f"failed: {failed_at}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert len(ran) == len(commands)
    for refusal in (
        "refused: another site's participant",
        "refused: logged in as nfh.chen",
        "refused by PostgreSQL: permission denied",
        "refused: read-only standby",
        "refused, and on record",
    ):
        assert refusal in done.stdout
    assert "may not act for site AMMS" in done.stderr
    assert "you are logged in as nfh.chen" in done.stderr
    assert "permission denied for table ledger_entries" in done.stderr
    assert "read-only" in done.stderr
    # The monitor's refused lock, recorded under its login (issue 12, item 7), in its audit trail.
    assert "monitor.rossi (monitor) may not lock the ledger" in done.stderr
    assert "ActionRefused" in done.stdout
