"""The PostgreSQL store for a multi-site deployment (SPEC section 6, ``postgresql://``).

The library's application recorder, extended to seal every insert in the same
transaction (:mod:`ledger.seal`).  Imported only when a ``postgresql://`` store
is used, so that commands on the SQLite default do not pay for psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg.sql import SQL

from ledger.seal import Seal


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.seal = Seal(prefix=f'"{self.datastore.schema}".', placeholder="%s", blob="BYTEA")
        self.sql_create_statements.extend(SQL(s) for s in self.seal.create_statements)  # type: ignore[arg-type]

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert positions is not None
        # The table lock taken before the insert serialises writers, so the
        # frontier read here is the latest one.
        self.seal.seal(curs, positions, stored_events)
        return positions


class LedgerPostgresFactory(PostgresFactory):
    application_recorder_class = LedgerPostgresRecorder
