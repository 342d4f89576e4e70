"""A throwaway PostgreSQL primary and its streaming hot standby, for the read-only tests (issue 12, item 4).

A second cluster of the installed PostgreSQL (``pg_config --bindir``), made by
the operating-system user ``postgres`` in a temporary folder: ``initdb -A
trust`` a primary on a free port of 127.0.0.1, ``pg_basebackup -R -X stream``
a standby, started on another port.  Both are stopped and removed by
:meth:`Replicas.close`.  The tests run as root, so every program runs through
``runuser -u postgres --``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

# Seconds the standby may take to replay what the primary committed.
REPLAY_TIMEOUT_SECONDS = 60
# Starts of a cluster tried, each on a fresh port, before giving up.
START_ATTEMPTS = 3


def _bindir() -> Path:
    return Path(
        subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replicas:
    """A primary on :attr:`primary_port` and its hot standby on :attr:`standby_port`."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.place = Path(tempfile.mkdtemp(prefix="trial-ledger-replicas-"))
        shutil.chown(self.place, "postgres", "postgres")
        self.primary_port, self.standby_port = _free_port(), _free_port()
        self.started: list[Path] = []
        # Set by whoever fills the primary: a participant, and a moment after the last write.
        self.participant = self.known_at = ""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _run(self, program: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.place)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _pg_ctl_start(self, data: Path, port: int) -> int:
        """Start the cluster in ``data`` on ``port``, else on another free port; the port it listens on.

        A free port found by probing may be taken before the server binds it:
        a failed start is tried again on a fresh port, and the last failure
        raised with the server's log.
        """
        log = self.place / f"{data.name}.log"
        for attempt in range(START_ATTEMPTS):
            options = f"-p {port} -k {self.place} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
            except RuntimeError as exc:
                if attempt == START_ATTEMPTS - 1:
                    said = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"{exc}\n{data.name}.log: {said}") from None
                port = _free_port()
                continue
            self.started.append(data)
            return port
        raise AssertionError("unreachable")

    def _start(self) -> None:
        primary, standby = self.place / "primary", self.place / "standby"
        self._run("initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", str(primary))
        self.primary_port = self._pg_ctl_start(primary, self.primary_port)
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
            "-D", str(standby), "-R", "-X", "stream",
        )  # fmt: skip
        self.standby_port = self._pg_ctl_start(standby, self.standby_port)

    def url(self, port: int, user: str = "postgres", schema: str | None = None) -> str:
        query = f"?schema={schema}" if schema else ""
        return f"postgresql://{user}@127.0.0.1:{port}/postgres{query}"

    def caught_up(self) -> None:
        """Wait until the standby has replayed everything the primary has committed."""
        with psycopg.connect(self.url(self.primary_port), autocommit=True) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        with psycopg.connect(self.url(self.standby_port), autocommit=True) as standby:
            while time.monotonic() < deadline:
                row = standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
                if row and row[0]:
                    return
                time.sleep(0.1)
        raise TimeoutError("the standby did not catch up with the primary")

    def close(self) -> None:
        for data in reversed(self.started):
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        self.started.clear()
        shutil.rmtree(self.place, ignore_errors=True)


@contextlib.contextmanager
def replica_pair() -> Iterator[Replicas]:
    """A started pair, stopped and removed afterwards; without root, a skip (a failure when CI=true)."""
    if os.geteuid() != 0:
        reason = "the standby harness runs its clusters as the operating-system user postgres (needs root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    pair = Replicas()
    try:
        yield pair
    finally:
        pair.close()
