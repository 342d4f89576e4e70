"""The staging file of one import: its lines and its checked events, on disk (issue 14, goal 2).

An import is all or nothing (SPEC section 6), so nothing may be stored before
every line has been checked; holding a million lines, their records and their
events in memory at once took 1.9 GB.  The import streams instead: each line
is validated and staged here as its raw bytes (with the participant it belongs
to), the lines are then checked one group of participants at a time, each
group's events staged as the rows the recorder stores, and only when every
line has passed are the staged rows moved into the ledger, in one transaction
of the ledger's own recorder (its seal, lock and conflict checks), read from
here as they are written.

The staging file is a private SQLite database in the temporary folder, its
name removed as soon as it is open: it is not part of the ledger, leaves
nothing behind however the import ends (``kill -9`` included: the system frees
an unnamed file with its last handle), works the same for a SQLite and a
PostgreSQL store, and is written without the ledger's write lock, which is
taken only for the final move.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from eventsourcing.persistence import StoredEvent

# Rows per ``executemany`` and per fetch: large enough to amortise, small enough to stay bounded.
BATCH = 5000
# The owner of a line whose participant is not known (a correction of an event that is nowhere).
UNKNOWN = ""


class Staging:
    """A temporary database holding an import's lines, then its checked events."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="trial-ledger-import-", suffix=".db")
        os.close(handle)
        try:
            self.db = sqlite3.connect(name, isolation_level=None)
            # A scratch file: nothing here must survive a crash, so no journal and no fsync.
            self.db.execute("PRAGMA journal_mode = OFF")
        finally:
            os.unlink(name)  # SQLite keeps its open handle; the folder keeps nothing
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -16000")  # 16 MB
        self.db.executescript(
            "CREATE TABLE lines (number INTEGER PRIMARY KEY, owner TEXT, id TEXT, target TEXT, raw BLOB);"
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, originator_id TEXT, originator_version INTEGER, "
            "topic TEXT, state BLOB);"
        )
        self.count = 0

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # -- lines ------------------------------------------------------------------------------

    def add_lines(self, rows: Iterable[tuple[int, str, str | None, str | None, bytes]]) -> None:
        """Stage ``(number, participant, id, target, raw)`` rows (a correction's participant: ``UNKNOWN``)."""
        self.db.execute("BEGIN")
        self.count += self.db.executemany("INSERT INTO lines VALUES (?,?,?,?,?)", rows).rowcount
        self.db.execute("COMMIT")

    def index_lines(self) -> None:
        """Index the staged lines by id and by participant, once they are all in."""
        self.db.execute("CREATE INDEX IF NOT EXISTS lines_id ON lines (id)")
        self.db.execute("CREATE INDEX IF NOT EXISTS lines_owner ON lines (owner, number)")

    def targets(self) -> Iterator[list[str]]:
        """The targets of corrections and voids that no line of the file provides, in batches."""
        cursor = self.db.execute(
            "SELECT DISTINCT a.target FROM lines a WHERE a.target IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM lines b WHERE b.id = a.target AND b.target IS NULL)"
        )
        while batch := cursor.fetchmany(BATCH):
            yield [target for (target,) in batch]

    def resolve(self, stored: dict[str, str]) -> None:
        """Give corrections and voids the participant of their target: a line of the file, else ``stored``."""
        self.db.execute("BEGIN")
        self.db.execute(
            "UPDATE lines SET owner = COALESCE((SELECT b.owner FROM lines b WHERE b.id = lines.target "
            "AND b.target IS NULL ORDER BY b.number LIMIT 1), '') WHERE target IS NOT NULL"
        )
        self.db.executemany(
            "UPDATE lines SET owner = ? WHERE target = ? AND owner = ''",
            ((participant, target) for target, participant in stored.items()),
        )
        self.db.execute("COMMIT")

    def id_clashes(self) -> list[tuple[int, str]]:
        """``(number, id)`` of lines whose client id an earlier line of another participant holds.

        Two lines of different participants never have the same content, so a
        later one is a different event under a used id; lines of one participant
        are judged together by the ledger's own idempotency check.
        """
        return self.db.execute(
            "SELECT a.number, a.id FROM lines a JOIN lines b ON a.id = b.id AND b.number < a.number "
            "WHERE a.id IS NOT NULL AND a.owner != b.owner "
            "AND b.number = (SELECT MIN(number) FROM lines c WHERE c.id = a.id) ORDER BY a.number"
        ).fetchall()

    def groups(self, lines_per_group: int) -> Iterator[list[tuple[int, bytes]]]:
        """``(number, raw)`` of the lines, whole participants at a time, about ``lines_per_group`` lines each.

        Participants come in the order of their first line in the file, as a
        batch held in memory takes them; lines whose participant is unknown form
        a group of their own.
        """
        cursor = self.db.execute(
            "SELECT l.owner, l.number, l.raw FROM lines l JOIN "
            "(SELECT owner, MIN(number) AS first FROM lines GROUP BY owner) f ON l.owner = f.owner "
            "ORDER BY f.first, l.number"
        )
        group: list[tuple[int, bytes]] = []
        owner: Any = ()
        while batch := cursor.fetchmany(BATCH):
            for who, number, raw in batch:
                if who != owner and len(group) >= lines_per_group:
                    yield group
                    group = []
                owner = who
                group.append((number, raw))
        if group:
            yield group

    # -- events -----------------------------------------------------------------------------

    def clear_events(self) -> None:
        self.db.execute("DELETE FROM events")

    def add_events(self, stored_events: Iterable[StoredEvent]) -> None:
        """Stage the rows the recorder will store, in the order it will store them."""
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO events (originator_id, originator_version, topic, state) VALUES (?,?,?,?)",
            ((s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events),
        )
        self.db.execute("COMMIT")

    def events(self) -> StagedEvents:
        return StagedEvents(self.db)


class StagedEvents(Sequence[StoredEvent]):
    """The staged events as the recorder's insert takes them: a sequence read from disk at every walk.

    The recorder walks the batch more than once (the rows, the seal, the read
    model); each walk streams the rows again, so none holds them all.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.size = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[StoredEvent]:
        cursor = self.db.execute(
            "SELECT originator_id, originator_version, topic, state FROM events ORDER BY seq"
        )
        while batch := cursor.fetchmany(BATCH):
            for originator_id, version, topic, state in batch:
                yield StoredEvent(originator_id, version, topic, state)

    @overload
    def __getitem__(self, index: int) -> StoredEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[StoredEvent]: ...

    def __getitem__(self, index: int | slice) -> StoredEvent | Sequence[StoredEvent]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        row = self.db.execute(
            "SELECT originator_id, originator_version, topic, state FROM events WHERE seq = ?", (index + 1,)
        ).fetchone()
        if row is None:
            raise IndexError(index)
        return StoredEvent(*row)
