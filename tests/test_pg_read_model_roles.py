"""The read model's tables refuse, even to raw SQL, a row a login did not just seal (issue 12, item 3).

``rm_timeline``, ``rm_tracking``, ``rm_summary`` and ``rm_clock`` are written by
every append in its own transaction, so every appending group may insert into
them; their row-level security (:func:`ledger.storage.grants.read_model_statements`)
lets a login that is not the owner insert only the rows of the batch it is
sealing itself, at the ledger's head: no summary of another site's participant,
no row in the past, none for an entry another login sealed.  The ledger's own
writes by every role still pass, ``rebuild`` and a second ``init`` keep the
policies.  With real logins (``site``: :mod:`tests.logins`).
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from click.testing import CliRunner
from psycopg import sql

from cli import main
from ledger.storage import grants
from projections.readmodel.queries import Monitor
from tests import lines as L
from tests.conftest import PG_ADMIN_URL
from tests.logins import DENIED, Site, as_login, sqlstate
from tests.staff import store
from tests.test_protocol_versions import AMENDED
from tests.test_submission_cli import CODING

Statement = tuple[str, tuple[object, ...]]


def summary(participant: str, position: int) -> Statement:
    return (
        "INSERT INTO rm_summary (participant, position, steps) VALUES (%s, %s, '\\x90')",
        (participant, position),
    )


def clock(position: int) -> Statement:
    return (
        "INSERT INTO rm_clock (position, recorded_at, high, early, versions, summaries) "
        "VALUES (%s, 0, 0, NULL, 'forged', 1)",
        (position,),
    )


def tracking(position: int) -> Statement:
    return "INSERT INTO rm_tracking (position) VALUES (%s)", (position,)


def timeline(participant: str, position: int) -> Statement:
    return (
        "INSERT INTO rm_timeline (participant, position, state) VALUES (%s, %s, '\\x00')",
        (participant, position),
    )


def seal_by_hand(conn: psycopg.Connection, stream: str) -> int:
    """An event of ``stream`` and its entry at the next position, as the login may seal one; its position."""
    [(position,)] = conn.execute("SELECT max(position) + 1 FROM ledger_entries").fetchall()
    conn.execute(
        "INSERT INTO trialledger_events (notification_id, originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, 99, 'by hand', '\\x00')",
        (position, stream),
    )
    conn.execute(
        "INSERT INTO ledger_entries (position, event_id, participant, content_hash, leaf_hash, chain_hash) "
        "VALUES (%s, %s, %s, '\\x00', '\\x00', '\\x00')",
        (position, f"{stream}#by-hand", stream),
    )
    return int(position)


def attempt(conn: psycopg.Connection, statement: Statement) -> str | None:
    """The SQLSTATE of ``statement``, tried in a savepoint rolled back afterwards (None: it went in)."""
    with conn.transaction(force_rollback=True):
        return sqlstate(conn, statement[0], *statement[1])


def cli(site: Site, person: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--store", as_login(site.url, site.logins[person]), *args])
    return result.exit_code, result.output


def test_rows_in_the_past_or_of_another_sites_participant_are_refused(site: Site) -> None:
    store(site.ledger("pi"), L.treated("AMMS-001"), user=site.logins["pi"])
    store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"])
    with site.connect("nurse") as conn:
        first, last = conn.execute(
            "SELECT min(position), max(position) FROM ledger_entries WHERE participant = 'NFH-001'"
        ).fetchone()
        forged = {
            "a summary of its own participant, in a batch already clocked": summary("NFH-001", first),
            "a summary of another site's participant": summary("AMMS-001", last),
            "a summary beyond the head": summary("NFH-001", last + 1),
            "a clock row in the past": clock(first),
            "a clock row beyond the head": clock(last + 1),
            "a tracking row in the past": tracking(first),
            "a tracking row beyond the head": tracking(last + 1),
        }
        for what, statement in forged.items():
            assert attempt(conn, statement) == DENIED, what
        # In a batch of its own at the head, the rows the ledger writes go in, and no others.
        with conn.transaction(force_rollback=True):
            head = seal_by_hand(conn, "NFH-009")
            own = [timeline("NFH-009", head), tracking(head), clock(head), summary("NFH-009", head)]
            assert [attempt(conn, statement) for statement in own] == [None] * 4
            for what, statement in {
                "a summary of another site's participant": summary("AMMS-001", head),
                "a summary of its own site's participant not in the batch": summary("NFH-001", head),
                "a timeline row of another stream than the entry's": timeline("AMMS-001", head),
            }.items():
                assert attempt(conn, statement) == DENIED, what
            # Its tracking and clock rows close the batch: nothing more goes in for it.
            for statement in (tracking(head), clock(head)):
                conn.execute(statement[0], statement[1])
            assert attempt(conn, timeline("NFH-009", head)) == DENIED
            assert attempt(conn, summary("NFH-009", head)) == DENIED


def test_no_login_writes_the_rows_of_an_entry_another_login_sealed(site: Site) -> None:
    """The investigator seals an entry by hand: its read-model rows are theirs to write, nobody else's."""
    with site.connect("pi") as conn:
        theirs = seal_by_hand(conn, "AMMS-009")
    rows = [timeline("AMMS-009", theirs), tracking(theirs), clock(theirs), summary("AMMS-009", theirs)]
    for person in ("nurse", "dm", "coder"):
        with site.connect(person) as conn:
            assert [attempt(conn, statement) for statement in rows] == [DENIED] * 4, person
    with site.connect("pi") as conn:
        assert [attempt(conn, statement) for statement in rows] == [None] * 4
    for person in ("monitor", "auditor"):
        with site.connect(person) as conn:
            assert [attempt(conn, statement) for statement in rows] == [DENIED] * 4, person


def test_the_ledgers_own_writes_by_every_role_pass_and_the_summaries_answer(
    site: Site, tmp_path: Path
) -> None:
    nurse, pi, dm = (site.logins[person] for person in ("nurse", "pi", "dm"))
    store(
        site.ledger("nurse"),
        [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="NFH-001-ae1")],
        user=nurse,
    )
    store(site.ledger("pi"), L.treated("AMMS-001"), user=pi)
    store(site.ledger("dm"), L.treated("NFH-002"), user=dm)
    amendment = tmp_path / "amendment-1.toml"
    amendment.write_bytes(AMENDED)
    code, out = cli(
        site, "dm", "protocol", "adopt", str(amendment), "--effective", "2014-01-01", "--reason", "am 1"
    )
    assert code == 0, out
    code, out = cli(site, "coder", "code-ae", *CODING)
    assert code == 0, out
    assert cli(site, "monitor", "lock", "--reason", "mine")[0] == 3  # recorded by the owner's function
    store(site.ledger("nurse"), [L.cmv("NFH-001", id="NFH-001-cmv1")], user=nurse)
    with site.connect("auditor") as conn:
        # The adoption, in force from before every screening, summarised both sites' participants again;
        # the clock covers the whole ledger.
        [(adopted,)] = conn.execute(
            "SELECT max(position) FROM ledger_entries WHERE participant = 'PROTOCOL'"
        ).fetchall()
        summarised = conn.execute(
            "SELECT participant FROM rm_summary WHERE position = %s ORDER BY participant", (adopted,)
        ).fetchall()
        assert summarised == [("AMMS-001",), ("NFH-001",), ("NFH-002",)]
        assert conn.execute(
            "SELECT (SELECT max(position) FROM rm_clock) = (SELECT max(position) FROM ledger_entries)"
        ).fetchone() == (True,)
    code, out = cli(site, "monitor", "--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True, out
    assert Monitor(site.ledger("monitor")).view.summarised
    code, out = cli(site, "monitor", "--json", "status")
    assert code == 0, out
    assert sorted(row["participant"] for row in json.loads(out)["participants"]) == [
        "AMMS-001",
        "NFH-001",
        "NFH-002",
    ]


def test_a_large_import_by_a_data_managers_login_passes_the_policies(site: Site, tmp_path: Path) -> None:
    lines = [
        line
        for number in range(1, 601)
        for site_code in ("NFH", "AMMS")
        for line in L.treated(f"{site_code}-{number:04d}")
    ]
    path = tmp_path / "sites.jsonl"
    path.write_text(L.jsonl(lines))
    code, out = cli(site, "dm", "import", str(path))
    assert code == 0, out
    with site.connect("auditor") as conn:
        counted = conn.execute(
            "SELECT (SELECT count(*) FROM rm_timeline WHERE participant LIKE '%%-0%%'), "
            "(SELECT count(DISTINCT participant) FROM rm_summary)"
        ).fetchone()
    assert counted == (len(lines), 1200)
    assert Monitor(site.ledger("monitor")).view.summarised
    code, out = cli(site, "monitor", "--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True, out


def policies(site: Site) -> list[tuple[object, ...]]:
    """The read model's policies and whether row-level security is on, as the catalogue says."""
    with psycopg.connect(PG_ADMIN_URL) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, p.polname, p.polcmd, p.polroles::regrole[]::text[], "
            "pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_policy p ON p.polrelid = c.oid "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) ORDER BY 1, 3",
            (site.schema, list(grants.READ_MODEL_TABLES)),
        ).fetchall()
    return rows


def test_rebuild_makes_the_tables_anew_with_their_policies(site: Site) -> None:
    store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"])
    before = policies(site)
    assert len(before) == 9 and all(row[1] for row in before)
    result = CliRunner().invoke(main, ["--store", site.url, "--json", "rebuild"])
    assert result.exit_code == 0, result.output
    assert policies(site) == before
    with site.connect("nurse") as conn, conn.transaction(force_rollback=True):
        head = seal_by_hand(conn, "NFH-009")
        assert attempt(conn, summary("AMMS-001", head)) == DENIED
    store(site.ledger("nurse"), L.treated("NFH-002"), user=site.logins["nurse"])
    assert Monitor(site.ledger("monitor")).view.summarised


def test_init_again_secures_the_read_model_of_a_ledger_secured_before_it_had_policies(site: Site) -> None:
    before = policies(site)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path = {0}").format(sql.Identifier(site.schema)))
        for table, _, policy, *_ in before:
            conn.execute(f"DROP POLICY {policy} ON {table}")
        for table in grants.READ_MODEL_TABLES:
            conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    with site.connect("nurse") as conn:
        assert attempt(conn, clock(10**6)) is None  # as the previous version left it
    for _ in range(2):
        assert CliRunner().invoke(main, ["--store", site.url, "init"]).exit_code == 0
        assert policies(site) == before
    with site.connect("nurse") as conn:
        assert attempt(conn, clock(10**6)) == DENIED
