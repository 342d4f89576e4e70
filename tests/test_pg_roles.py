"""PostgreSQL itself enforces who may do what (issue 12, items 1-3), with real logins and plain SQL.

``init`` by the schema's owner makes the groups, grants and policies; ``user
add`` makes the login roles; then every login connects as itself: the ledger
acts as the session user, and the database refuses, even to raw SQL, what the
login's role may not do.  The logins are :mod:`tests.logins`' (the ``site``
fixture of ``conftest.py``).
"""

from __future__ import annotations

import getpass
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eventsourcing.utils import get_topic
from lxml import etree
from psycopg import sql

from cli import main
from ledger.application import access, signatures
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import AdverseEventCoded, KeyRegistered, RecordSigned, UserUpdated, fill
from ledger.domain.participant import EVENT_CLASS
from ledger.exchange.odm import NS
from ledger.storage import grants
from ledger.storage.postgres import INSERTS
from tests import lines as L
from tests.conftest import PG_ADMIN_URL, drop_roles
from tests.logins import DENIED, PEOPLE, Site, as_login, register, sqlstate, stored_row
from tests.staff import PASSPHRASE, store

TABLES = ("trialledger_events", "ledger_entries", "ledger_meta")


def test_each_login_acts_as_itself_and_a_claimed_name_is_refused(site: Site) -> None:
    nurse = site.ledger("nurse")
    assert nurse.login is not None and nurse.login.name == site.logins["nurse"]
    assert access.acting(nurse, None, "write") == site.logins["nurse"]
    with pytest.raises(Refused, match=f"you are logged in as {site.logins['nurse']}; --user .*dm"):
        access.acting(nurse, site.logins["dm"], "lock")
    runner = CliRunner()
    store_url = as_login(site.url, site.logins["nurse"])
    screen = [*("screen", "--participant", "NFH-001", "--site", "NFH", "--effective", "2014-01-06")]
    screen += [*("--age-years", "42", "--sex", "F", "--refractory-cmv", "infection")]
    screen += [*("--consent-date", "2014-01-05", "--consent-by", "participant")]
    screen += [*("--hr", "78", "--rr", "16", "--sbp", "118", "--dbp", "76")]
    claimed = runner.invoke(main, ["--store", store_url, "--user", site.logins["dm"], *screen])
    assert claimed.exit_code == 3
    assert f"logged in as {site.logins['nurse']}" in claimed.stderr
    result = runner.invoke(main, ["--store", store_url, "--json", *screen])
    assert result.exit_code == 0, result.output
    entries = list(site.ledger("monitor").entries())
    assert entries[-1].record.user == site.logins["nurse"]
    # Each claim was an attempt, on record under the login that made it.
    refused = [e.record for e in entries if e.record.type == "ActionRefused"]
    assert [(r.user, r.action) for r in refused] == [(nurse.login.name, "lock"), (nurse.login.name, "screen")]


def test_the_roles_hold_through_the_ledger_for_every_login(site: Site) -> None:
    assert store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"]).stored
    with pytest.raises(Refused, match="may not act for site AMMS"):
        store(site.ledger("nurse"), L.treated("AMMS-001"), user=site.logins["nurse"])
    assert store(site.ledger("pi"), L.treated("AMMS-001"), user=site.logins["pi"]).stored
    assert store(site.ledger("dm"), L.treated("NFH-002"), user=site.logins["dm"]).stored
    with pytest.raises(Refused, match="may not append clinical data"):
        store(site.ledger("monitor"), L.treated("NFH-003"), user=site.logins["monitor"])
    assert access.lock(site.ledger("dm"), None, "interim") == "TRIAL#1"
    assert access.unlock(site.ledger("dm"), None, "done") == "TRIAL#2"
    # Each refusal is on record under its own login, the SELECT-only monitor's too (the owner's
    # function seals it: tests/test_pg_refusals.py).
    refused = [e.record for e in site.ledger("auditor").entries() if e.record.type == "ActionRefused"]
    assert [r.user for r in refused] == [site.logins["nurse"], site.logins["monitor"]]


@pytest.mark.parametrize("person", list(PEOPLE))
def test_no_login_but_the_owner_may_update_delete_or_truncate(site: Site, person: str) -> None:
    store(site.ledger("dm"), L.treated("NFH-001"), user=site.logins["dm"])
    with site.connect(person) as conn:
        for table in TABLES:
            assert sqlstate(conn, f"SELECT count(*) FROM {table}") is None
            for statement in (
                f"UPDATE {table} SET {'value = value' if table == 'ledger_meta' else 'position = position'}",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
            ):
                statement = statement.replace("position = position", _unchanged(table))
                assert sqlstate(conn, statement) == DENIED, (person, statement)
        assert sqlstate(conn, "INSERT INTO ledger_meta VALUES ('chain', '\\x00')") == DENIED
        assert sqlstate(conn, "SELECT ledger_put_meta('frontier', '\\x00'::bytea)") == DENIED or person in (
            "dm",
            "nurse",
            "pi",
            "coder",
        )
        assert sqlstate(conn, "SELECT ledger_put_meta('chain', '\\x00'::bytea)") == DENIED
        assert sqlstate(conn, "SELECT ledger_set_member(%s, 'data_manager', NULL)", site.logins[person]) == (
            None if person == "dm" else DENIED
        )


def _unchanged(table: str) -> str:
    return (
        "originator_version = originator_version" if table == "trialledger_events" else "event_id = event_id"
    )


def _insert_event(stream: str) -> str:
    return (
        "INSERT INTO trialledger_events (notification_id, originator_id, originator_version, topic, state) "
        f"VALUES (1000000, '{stream}', 99, 'forged', '\\x00')"
    )


def _insert_entry(stream: str, login: str = "DEFAULT") -> str:
    values = f"1000000, 'forged#1', '{stream}', '\\x00', '\\x00', '\\x00', {login}"
    return f"INSERT INTO ledger_entries VALUES ({values})"


def test_every_sealed_row_names_its_login_and_none_can_name_another(site: Site) -> None:
    store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"])
    access.lock(site.ledger("dm"), None, "interim")
    with site.connect("auditor") as conn:
        rows = conn.execute("SELECT participant, login FROM ledger_entries ORDER BY position").fetchall()
    assert {login for participant, login in rows if participant == "NFH-001"} == {site.logins["nurse"]}
    assert rows[-1] == ("TRIAL", site.logins["dm"])
    for person in ("nurse", "dm", "coder"):
        with site.connect(person) as conn, conn.transaction(force_rollback=True):
            assert sqlstate(conn, _insert_event("USERS")) is None, person  # a stream every writer appends to
            with conn.transaction(force_rollback=True):
                forged = _insert_entry("USERS", f"'{site.logins['dm' if person != 'dm' else 'nurse']}'")
                assert sqlstate(conn, forged) == DENIED, person
            assert sqlstate(conn, _insert_entry("USERS")) is None, person  # in its own name it may


def test_verify_names_a_row_that_claims_another_user_than_the_login_that_sealed_it(site: Site) -> None:
    """A modified client sealing a role change for itself in the data manager's name (issue 12, item 8).

    The users' stream is open to every appending login (for keys and refusals), and
    the replay of roles alone would pass this row, for the data manager it names
    may change roles: the login the database recorded for the row is what exposes it.
    """
    runner = CliRunner()
    as_monitor = as_login(site.url, site.logins["monitor"])
    assert runner.invoke(main, ["--store", as_monitor, "verify"]).exit_code == 0
    nurse = site.ledger("nurse")
    users = access.Registry.load(nurse)
    forged = access.checked(
        UserUpdated,
        {
            "name": site.logins["nurse"],
            "role": "data_manager",
            "user_site": None,
            "reason": "promoted",
            "user": site.logins["dm"],
        },
    )
    nurse.save(access.Registry.append(users, forged, nurse.clock()))
    result = runner.invoke(main, ["--store", as_monitor, "--json", "verify"])
    assert result.exit_code == 1, result.output
    [row] = json.loads(result.stdout)["authorization"]["unauthorized"]
    assert row["type"] == "UserUpdated"
    assert row["user"] == site.logins["dm"]
    assert row["reason"] == f"appended by the login {site.logins['nurse']}, but it names {site.logins['dm']}"


def test_a_users_row_another_login_sealed_grants_nothing_before_verify_names_it(
    site: Site, tmp_path: Path
) -> None:
    """Issue 12, item 2: a modified client of the nurse seals, in the data manager's name, the nurse's
    promotion, a key and a signature made with it.  The application's users skip the rows another
    login sealed: no role, no key, no valid signature; ``verify`` names each row."""
    nurse_name, dm_name = site.logins["nurse"], site.logins["dm"]
    nurse = site.ledger("nurse")
    store(nurse, L.treated("NFH-001"), user=nurse_name)
    key_file = tmp_path / "nurse.pem"
    signatures.make_key(nurse, None, key_file, PASSPHRASE)  # the nurse's own key, registered as theirs
    promotion = {"name": nurse_name, "role": "data_manager", "user_site": None, "reason": "promoted"}
    forged_key = Ed25519PrivateKey.generate()
    public = forged_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    for kind, fields in ((UserUpdated, promotion), (KeyRegistered, {"name": dm_name, "public_key": public})):
        record = access.checked(kind, {**fields, "user": dm_name})
        nurse.save(access.Registry.append(access.Registry.load(nurse), record, nurse.clock()))
    registry = access.Registry.load(site.ledger("auditor"))
    assert registry is not None and registry.users[nurse_name].role == "site_staff"
    assert dm_name not in registry.keys and nurse_name in registry.keys
    with pytest.raises(Refused, match=r"\(site_staff\) may not sign as approved"):
        signatures.sign(nurse, None, "NFH-001", "approved", key_file, PASSPHRASE)
    signed = _signature_as(nurse, dm_name, forged_key)
    [check] = [c for c in signatures.check(site.ledger("auditor")) if c.event_id == signed]
    assert (check.signer, check.status, check.problem) == (
        dm_name,
        "invalid",
        f"{dm_name} had no registered key when signing",
    )
    as_auditor = as_login(site.url, site.logins["auditor"])
    runner = CliRunner()
    result = runner.invoke(main, ["--store", as_auditor, "export", "odm", str(tmp_path / "odm.xml")])
    assert result.exit_code == 0, result.output
    admin = etree.parse(str(tmp_path / "odm.xml")).getroot().find(f"{{{NS}}}AdminData")
    assert (
        admin.find(f"{{{NS}}}User[@OID='USR.{nurse_name}']").findtext(f"{{{NS}}}Organization") == "site_staff"
    )
    assert admin.find(f"{{{NS}}}User[@OID='USR.{dm_name}']").find(f"{{{NS}}}Certificate") is None
    result = runner.invoke(main, ["--store", as_auditor, "--json", "verify"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)["authorization"]["unauthorized"]
    assert [(row["type"], row["reason"]) for row in rows] == [
        (kind, f"appended by the login {nurse_name}, but it names {dm_name}")
        for kind in ("UserUpdated", "KeyRegistered", "RecordSigned")
    ]


def _signature_as(ledger: TrialLedger, user: str, key: Ed25519PrivateKey) -> str:
    """A signature of NFH-001 in ``user``'s name made with ``key``, sealed past every check; its id."""
    aggregate = ledger.repository.get("NFH-001")
    seal = ledger.recorder.seal  # type: ignore[attr-defined]
    leaves = seal.participant_leaves(ledger.recorder.datastore, "NFH-001")  # type: ignore[attr-defined]
    at = ledger.clock()
    fields = {
        "participant": "NFH-001",
        "meaning": "approved",
        "signed_at": at,
        "covers": [(event_id, leaf.hex()) for event_id, leaf in leaves],
        "user": user,
        "signature": "0" * 128,
    }
    draft = access.checked(RecordSigned, fields)
    record = fill(draft, signature=key.sign(signatures.message(ledger.protocol.study, draft)).hex())
    event_id: str = aggregate.append(record, ledger.protocol, at)
    ledger.save(aggregate)
    return event_id


def test_a_users_row_without_a_seal_grants_nothing(site: Site) -> None:
    """A row inserted by hand into the users' stream with no ledger entry (issue 12, item 2)."""
    nurse_name = site.logins["nurse"]
    fields = {"name": nurse_name, "role": "data_manager", "user_site": None, "reason": "promoted"}
    record = access.checked(UserUpdated, {**fields, "user": site.logins["dm"]})
    with site.connect("nurse") as conn:
        conn.execute(
            "INSERT INTO trialledger_events "
            "(notification_id, originator_id, originator_version, topic, state) "
            "SELECT max(notification_id) + 1, 'USERS', %s, %s, %s FROM trialledger_events",
            stored_row(site.ledger("nurse"), access.Registry, record),
        )
    registry = access.Registry.load(site.ledger("dm"))
    assert registry is not None and registry.users[nurse_name].role == "site_staff"
    with pytest.raises(Refused, match=r"\(site_staff\) may not lock the ledger"):
        access.lock(site.ledger("nurse"), None, "mine now")
    result = CliRunner().invoke(
        main, ["--store", as_login(site.url, site.logins["auditor"]), "--json", "verify"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_bad"]["problem"] == (
        "this stored event has no ledger entry: it was inserted directly in the database"
    )


def test_rows_a_login_types_far_beyond_the_head_stop_no_append_and_verify_names_them(site: Site) -> None:
    """A site login's own event and entry by hand, far beyond the head: the next appends follow them."""
    store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"])
    with site.connect("nurse") as conn:
        [(far,)] = conn.execute("SELECT max(position) + 1000 FROM ledger_entries").fetchall()
        entry = _insert_entry("NFH-009").replace("1000000", str(far))
        assert sqlstate(conn, entry) == DENIED  # an entry alone: no event at its position
        conn.execute(_insert_event("NFH-009").replace("1000000", str(far)))
        conn.execute(entry)
    store(site.ledger("pi"), L.treated("AMMS-001"), user=site.logins["pi"])
    result = CliRunner().invoke(
        main, ["--store", as_login(site.url, site.logins["auditor"]), "--json", "verify"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_bad"]["position"] == far


@pytest.mark.parametrize(
    ("person", "allowed"),
    [
        ("dm", {"NFH-009", "AMMS-009", "TRIAL", "REFUSALS", "USERS", "PROTOCOL"}),
        ("nurse", {"NFH-009", "REFUSALS", "USERS"}),
        ("pi", {"AMMS-009", "REFUSALS", "USERS"}),
        ("coder", {"REFUSALS", "USERS"}),  # in a participant's stream a coding only (below)
        ("monitor", set()),
        ("auditor", set()),
    ],
)
def test_raw_inserts_are_refused_outside_the_role(site: Site, person: str, allowed: set[str]) -> None:
    """Each stream: an event, then its entry; and never an entry alone, which would seal nothing."""
    with site.connect(person) as conn:
        for stream in ("NFH-009", "AMMS-009", "TRIAL", "REFUSALS", "USERS", "PROTOCOL"):
            with conn.transaction(force_rollback=True):
                assert sqlstate(conn, _insert_entry(stream)) == DENIED, (person, stream)
            with conn.transaction(force_rollback=True):
                expected = None if stream in allowed else DENIED
                assert sqlstate(conn, _insert_event(stream)) == expected, (person, stream)
                if expected is None:
                    assert sqlstate(conn, _insert_entry(stream)) is None, (person, stream)


def test_a_coder_appends_to_a_participants_stream_only_a_coding_and_its_entry(site: Site) -> None:
    """A coder's raw rows in a participant's stream: the coding's topic only, and an entry only for it."""
    coding = get_topic(EVENT_CLASS[AdverseEventCoded])
    event = _insert_event("AMMS-009").replace("'forged'", f"'{coding}'")
    with site.connect("coder") as conn:
        with conn.transaction(force_rollback=True):
            assert sqlstate(conn, _insert_entry("AMMS-009")) == DENIED  # no event at that position
        with conn.transaction(force_rollback=True):
            assert sqlstate(conn, _insert_event("AMMS-009")) == DENIED  # an event, not a coding
        with conn.transaction(force_rollback=True):
            assert sqlstate(conn, event) is None
            with conn.transaction(force_rollback=True):  # a savepoint: the refusal ends only it
                assert sqlstate(conn, _insert_entry("NFH-009")) == DENIED  # the coding is another stream's
            assert sqlstate(conn, _insert_entry("AMMS-009")) is None


def test_role_changes_and_deactivation_take_effect_in_the_database_at_once(site: Site) -> None:
    nurse = site.logins["nurse"]
    dm = site.ledger("dm")
    access.update_user(dm, None, name=nurse, role=None, user_site="AMMS", reason="moved")
    with site.connect("nurse") as conn, conn.transaction(force_rollback=True):
        assert sqlstate(conn, _insert_event("AMMS-009")) is None
    with site.connect("nurse") as conn:
        assert sqlstate(conn, _insert_event("NFH-009")) == DENIED
    access.update_user(dm, None, name=nurse, role="monitor", user_site=None, reason="now monitors")
    with site.connect("nurse") as conn:
        assert sqlstate(conn, _insert_event("AMMS-009")) == DENIED
        assert sqlstate(conn, "SELECT count(*) FROM trialledger_events") is None
    access.deactivate_user(dm, None, name=nurse, reason="left")
    with site.connect("nurse") as conn:
        statement = sql.SQL("SELECT count(*) FROM {0}.trialledger_events").format(sql.Identifier(site.schema))
        assert sqlstate(conn, statement) == DENIED
    result = CliRunner().invoke(main, ["--store", as_login(site.url, nurse), "status"])
    assert result.exit_code == 3, result.output
    assert "permission denied" in result.stderr


def test_user_add_adopts_an_existing_login(site: Site, tmp_path: Path) -> None:
    name = f"{site.tag}.existing"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {0} LOGIN").format(sql.Identifier(name)))
    register(site.ledger("dm"), name, "site_staff", "NFH")
    assert store(TrialLedger(as_login(site.url, name)), L.treated("NFH-001"), user=name).stored


def test_on_sqlite_the_actor_is_the_claimed_name_else_the_operating_system_user(sqlite_url: str) -> None:
    ledger = TrialLedger(sqlite_url)
    assert ledger.login is None
    assert access.acting(ledger, "nfh.chen", "write") == "nfh.chen"
    assert access.acting(ledger, None, "write") == getpass.getuser()
    assert not access.secure(ledger)


def test_a_site_without_its_group_is_named_and_nothing_changes(site: Site) -> None:
    """A protocol version may add a site after init: its group comes with the owner's next init."""
    dm = site.ledger("dm")
    with pytest.raises(
        InvalidInput, match="site: the database has no group for site NEW1 yet; the owner runs"
    ):
        dm.recorder.set_member(site.logins["nurse"], "site_staff", "NEW1")  # type: ignore[attr-defined]
    assert store(site.ledger("nurse"), L.treated("NFH-001"), user=site.logins["nurse"]).stored


def test_a_large_import_the_database_refuses_on_its_last_line_stores_nothing(
    site: Site, tmp_path: Path
) -> None:
    """Row-level security judges every row a login that is not the owner copies in (issue 14).

    Such a login's rows go through a temporary table and one ``INSERT ... SELECT``.
    Here the administrator has left the data manager's login in the groups of
    NFH's site staff only, so the ledger's own checks (its registry still says
    data manager) pass every line, and only the database stands in the way of
    the last one, a participant of AMMS: exit 3, and no line is stored.
    """
    dm = site.logins["dm"]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        revoke = sql.SQL("REVOKE {0} FROM {1}")
        conn.execute(
            revoke.format(sql.Identifier(grants.group(site.schema, "data_manager")), sql.Identifier(dm))
        )
        staff = [grants.group(site.schema, "site_staff"), grants.site_group(site.schema, "NFH")]
        grant = sql.SQL("GRANT {0} TO {1}")
        conn.execute(grant.format(sql.SQL(", ").join(map(sql.Identifier, staff)), sql.Identifier(dm)))
    lines = [line for number in range(1, 1001) for line in L.treated(f"NFH-{number:04d}")]
    lines.append(L.screening("AMMS-0001", id="AMMS-0001-scr"))
    path = tmp_path / "sites.jsonl"
    path.write_text(L.jsonl(lines))
    result = CliRunner().invoke(main, ["--store", as_login(site.url, dm), "import", str(path)])
    assert result.exit_code == 3, result.output
    assert "the database refuses this login" in result.stderr
    assert "row-level security" in result.stderr
    streams = {entry.participant for entry in site.ledger("auditor").entries()}
    assert not any(stream.startswith(("NFH-", "AMMS-")) for stream in streams)


def test_a_login_that_may_not_make_temporary_tables_appends_row_by_row(pg_ready: bool) -> None:
    """A database whose logins may not make temporary tables: a data manager's rows go in by INSERT."""
    database = f"tl_test_{uuid.uuid4().hex[:12]}"
    tag = f"t{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {0}").format(sql.Identifier(database)))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("REVOKE TEMPORARY ON DATABASE {0} FROM PUBLIC").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("CREATE SCHEMA {0}").format(sql.Identifier(tag)))  # its groups: tag_...
        store_url = f"{url}?schema={tag}"
        assert CliRunner().invoke(main, ["--store", store_url, "init"]).exit_code == 0
        register(TrialLedger(store_url), f"{tag}.dm", "data_manager")
        dm = TrialLedger(as_login(store_url, f"{tag}.dm"))
        assert store(dm, L.treated("NFH-001"), user=f"{tag}.dm").stored
        assert dm.recorder.way == INSERTS  # type: ignore[attr-defined]
        result = CliRunner().invoke(main, ["--store", as_login(store_url, f"{tag}.dm"), "--json", "verify"])
        assert result.exit_code == 0, result.output
        dm.close()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {0} WITH (FORCE)").format(sql.Identifier(database)))
            drop_roles(conn, tag)


def test_the_demo_run_by_a_data_managers_login_codes_as_that_login(site: Site) -> None:
    """The demo's coder is a name the login may not claim: the login codes itself (issue 12, item 1)."""
    dm = site.logins["dm"]
    result = CliRunner().invoke(
        main, ["--store", as_login(site.url, dm), "--json", "demo", "--participants", "6"]
    )
    assert result.exit_code == 0, result.output
    coded = json.loads(result.stdout)["coded"]
    assert coded > 0
    with site.connect("auditor") as conn:
        rows = conn.execute(
            "SELECT e.login FROM ledger_entries e "
            "JOIN trialledger_events s ON s.notification_id = e.position WHERE s.topic = %s",
            (get_topic(EVENT_CLASS[AdverseEventCoded]),),
        ).fetchall()
    assert len(rows) == coded and {login for (login,) in rows} == {dm}
