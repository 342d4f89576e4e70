"""PostgreSQL enforces the roles itself: group roles, privileges, row-level security (issue 12, items 2-3).

``init``, run by the owner of the schema, makes one group role per ledger role
(``<schema>_<role>``) and one per site (``<schema>_site_<SITE>``), and grants:

- every group: ``USAGE`` on the schema and ``SELECT`` on every table (monitors
  and auditors get nothing more);
- the groups that append (data managers, site staff, investigators, coders):
  ``INSERT`` on every table but ``ledger_meta``, and the sequence of positions;
  nobody but the owner has ``UPDATE``, ``DELETE`` or ``TRUNCATE`` on any table;
- row-level security on the events and ``ledger_entries``: site staff and
  investigators insert rows only for the participants of the sites whose group
  they are in (and :data:`SHARED_STREAMS`: refusals, their own keys); coders only
  codings in a participant's stream (the coding's topic) and :data:`SHARED_STREAMS`,
  never in :data:`MANAGED_STREAMS` (the protocol versions, the lock); data managers anywhere;
- row-level security on the read model's tables (:data:`READ_MODEL_TABLES`), which
  the writes keep in their own transaction: a login inserts their rows only for
  what it has just sealed itself, at the ledger's head (:func:`read_model_statements`);
- ``ledger_entries.login``: the login that appended each sealed row, filled by
  the database (``session_user``) and checked by the policies, so that no login
  but the owner can seal a row in another's name;
- three ``SECURITY DEFINER`` functions for what an append needs beyond
  ``INSERT``: :data:`LOCK_FUNCTION` takes the table lock that orders appends,
  :data:`META_FUNCTION` moves the seal's frontier and chain head (the chain head
  only to the chain hash of the last entry), and :data:`MEMBER_FUNCTION`, for
  data managers only, creates or adopts a login role and gives it exactly one
  ledger group and its site group (none: deactivated);
- a fourth, for every group, monitors and auditors included: it seals the record
  of the caller's own refused attempt and nothing else
  (:mod:`ledger.storage.refusal_seal`, issue 12, item 7).

A login that is not the owner appends through the functions; it copies its
rows into a temporary table and inserts them from there in one statement, so
that the policies judge every row (PostgreSQL refuses ``COPY FROM`` into a table
under row-level security; :func:`ledger.storage.postgres.append_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args

from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from ledger.domain.errors import InvalidInput
from ledger.domain.events import SITE_ROLES, Role
from ledger.storage import refusal_seal
from ledger.storage.feed import TIMELINE_TABLE, TRACKING_TABLE
from ledger.storage.refusal_seal import RefusalTopics
from ledger.storage.seal import ENTRIES_TABLE, REFUSALS_STREAM, TRIAL_STREAM
from ledger.storage.summaries import CLOCK_TABLE, SUMMARY_TABLE

ROLES: tuple[str, ...] = get_args(Role)
WRITERS: tuple[str, ...] = ("data_manager", "site_staff", "investigator", "coder")
LOCK_FUNCTION = "ledger_lock_for_append"
META_FUNCTION = "ledger_put_meta"
MEMBER_FUNCTION = "ledger_set_member"
SITE_FUNCTION = "ledger_own_site"
# The column of ``ledger_entries`` that names the login that appended the row.
LOGIN_COLUMN = "login"
# PostgreSQL keeps the first 63 bytes of a name.
NAME_LIMIT = 63
# The streams only data managers append to: the protocol versions, and the trial's own stream
# (the lock), so that no other login can lock the ledger, even with SQL typed by hand.
MANAGED_STREAMS = ("PROTOCOL", TRIAL_STREAM)
# Streams every appending login may add to: the stream of refusals, where refused attempts
# are recorded, and the users' stream, where each user registers their own signing key; every
# row names the login that sealed it.
SHARED_STREAMS = (REFUSALS_STREAM, "USERS")
# The read model's tables (SPEC section 4), written by every append in its own transaction.
READ_MODEL_TABLES = (TIMELINE_TABLE, TRACKING_TABLE, SUMMARY_TABLE, CLOCK_TABLE)


def group(schema: str, role: str) -> str:
    """The group role of ledger role ``role`` in ``schema``."""
    return f"{schema}_{role}"


def site_group(schema: str, site: str) -> str:
    """The group role of the staff of ``site`` in ``schema``."""
    return f"{schema}_site_{site}"


def check_name(name: str, what: str) -> None:
    """Refuse (exit 2, naming ``what``) a role name PostgreSQL would cut short."""
    if len(name.encode()) > NAME_LIMIT:
        raise InvalidInput(f"{what}: {name} is longer than PostgreSQL's {NAME_LIMIT}-byte role names")


def secure_statements(
    schema: str,
    events: str,
    sites: Iterable[str],
    existing: set[str],
    refusals: RefusalTopics | None,
    read_model: Iterable[str],
    coding: Sequence[str],
) -> list[Composed]:
    """The statements that make ``schema``'s groups, grants, policies and functions (idempotent).

    ``existing`` are the role names the cluster has already.  ``refusals``: the
    topics of the refusals' stream, for the function that seals a refusal; None
    when the stored states are enciphered or compressed, which SQL cannot read
    (then there is no such function, and a ``SELECT``-only login's refusal is not recorded).
    ``read_model``: those of :data:`READ_MODEL_TABLES` the schema has (a ledger
    written by an earlier version may lack some until ``rebuild``).  ``coding``:
    the topics of the events a coder appends to a participant's stream.
    """
    s = Identifier(schema)
    table = SQL("{0}.{1}").format(s, Identifier(events))
    entries, meta = SQL("{0}.ledger_entries").format(s), SQL("{0}.ledger_meta").format(s)
    groups = {role: group(schema, role) for role in ROLES}
    sites = list(sites)
    site_groups = [site_group(schema, site) for site in sites]
    for name in (*groups.values(), *site_groups):
        check_name(name, "schema")
    statements = [
        SQL("CREATE ROLE {0} NOLOGIN").format(Identifier(name))
        for name in (*groups.values(), *site_groups)
        if name not in existing
    ]
    everyone = _members(groups, ROLES)
    writers = _members(groups, WRITERS)
    site_writers = _members(groups, SITE_ROLES)
    statements += [
        SQL("GRANT USAGE ON SCHEMA {0} TO {1}").format(s, everyone),
        SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO {1}").format(s, everyone),
        SQL("GRANT INSERT ON ALL TABLES IN SCHEMA {0} TO {1}").format(s, writers),
        SQL("REVOKE INSERT ON {0} FROM {1}").format(meta, writers),
        SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {0} TO {1}").format(s, writers),
        # Tables the owner makes later (read models) are readable and appendable alike.
        SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {0} GRANT SELECT ON TABLES TO {1}").format(s, everyone),
        SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {0} GRANT INSERT ON TABLES TO {1}").format(s, writers),
        SQL(
            "CREATE OR REPLACE FUNCTION {0}.{1}(stream text) RETURNS boolean LANGUAGE sql STABLE "
            "SET search_path = pg_catalog, pg_temp AS $$ SELECT EXISTS (SELECT 1 FROM pg_roles r "
            "WHERE r.rolname = {2} || split_part(stream, '-', 1) "
            "AND pg_has_role(session_user, r.oid, 'MEMBER')) $$"
        ).format(s, Identifier(SITE_FUNCTION), Literal(site_group(schema, ""))),
    ]
    # Who appended each sealed row, as the database authenticated them; rows sealed before
    # the ledger's groups existed keep none.
    statements += [
        SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS {1} text").format(entries, Identifier(LOGIN_COLUMN)),
        SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT session_user").format(
            entries, Identifier(LOGIN_COLUMN)
        ),
    ]
    coded = Literal(list(coding))

    def sealed_event(also: Composable) -> Composed:
        """An entry seals a stored event: the one at its position, of its stream (``also``: and more)."""
        return SQL(
            "EXISTS (SELECT 1 FROM {0} ev WHERE ev.notification_id = position "
            "AND ev.originator_id = participant{1})"
        ).format(table, also)

    # An entry names the login that appends it, and seals an event already stored: no entry stands
    # alone where the next append's seal would have to follow it.  A coder's row of a participant's
    # stream is a coding: the event's topic says so, and the event its entry seals is one.
    own_entry = SQL("{0} = session_user AND {1}").format(Identifier(LOGIN_COLUMN), sealed_event(SQL("")))
    coding_event = SQL("topic = ANY ({0})").format(coded)
    coding_entry = sealed_event(SQL(" AND ev.topic = ANY ({0})").format(coded))
    for target, column, own, coding_row in (
        (table, "originator_id", SQL("true"), coding_event),
        (entries, "participant", own_entry, coding_entry),
    ):
        stream = Identifier(column)
        statements += [
            SQL("ALTER TABLE {0} ENABLE ROW LEVEL SECURITY").format(target),
            *_policy(target, "ledger_read", SQL("FOR SELECT TO {0} USING (true)").format(everyone)),
            *_policy(
                target,
                "ledger_append_anywhere",
                SQL("FOR INSERT TO {0} WITH CHECK ({1})").format(Identifier(groups["data_manager"]), own),
            ),
            *_policy(
                target,
                "ledger_append_coding",
                SQL(
                    "FOR INSERT TO {0} WITH CHECK ({1} <> ALL ({2}) AND ({1} = ANY ({3}) OR {4}) AND {5})"
                ).format(
                    Identifier(groups["coder"]),
                    stream,
                    Literal(list(MANAGED_STREAMS)),
                    Literal(list(SHARED_STREAMS)),
                    coding_row,
                    own,
                ),
            ),
            *_policy(
                target,
                "ledger_append_own_site",
                SQL("FOR INSERT TO {0} WITH CHECK (({1} = ANY ({2}) OR {3}.{4}({1})) AND {5})").format(
                    site_writers, stream, Literal(list(SHARED_STREAMS)), s, Identifier(SITE_FUNCTION), own
                ),
            ),
        ]
    statements += read_model_statements(schema, read_model)
    statements += _functions(schema, table, entries, meta, groups, writers)
    if refusals is None:
        return [*statements, *refusal_seal.drop_statements(schema)]
    return [
        *statements,
        *refusal_seal.statements(schema, events, refusals),
        refusal_seal.grant_statement(schema, everyone),
    ]


def read_model_statements(schema: str, tables: Iterable[str]) -> list[Composed]:
    """Row-level security on the read model's ``tables`` (of :data:`READ_MODEL_TABLES`; idempotent).

    ``init`` makes it with the rest, and ``rebuild``, which makes the tables anew,
    again (:meth:`ledger.storage.postgres.CopyFeed.secure`): a policy goes with its
    dropped table, where the grants of a new table come from the default privileges.
    Every group reads them.  A login that is not the owner (the owner's functions,
    the refusal's seal included, are not judged) inserts only what the write it is
    sealing adds (:meth:`ledger.storage.feed.TimelineFeed.feed`), so no row for what
    another login sealed, and none in the past:

    - ``rm_timeline``: the row of an entry that this login sealed, of that entry's
      stream, after the tracked position;
    - ``rm_tracking`` and ``rm_clock``: a row at the ledger's last position, sealed
      by this login, beyond the table's highest;
    - ``rm_summary``: a row at the ledger's last position, sealed by this login,
      beyond the clock's highest (before the batch's clock row closes it); data
      managers for any participant (adopting a protocol version summarises
      everyone again), site staff, investigators and coders only for a
      participant with an entry this login sealed after the clock's highest
      position, that is in this batch.

    Each check is a look-up by index: the ledger's last entry and each table's
    highest position once a statement, the entry of a row or a participant's
    entries after a position once a row.
    """
    s = Identifier(schema)
    groups = {role: group(schema, role) for role in ROLES}
    entries = SQL("{0}.{1}").format(s, Identifier(ENTRIES_TABLE))
    login = Identifier(LOGIN_COLUMN)

    def highest(table: str) -> Composed:
        return SQL("(SELECT COALESCE(MAX(h.position), 0) FROM {0}.{1} h)").format(s, Identifier(table))

    # The row's position is the ledger's last, and this login sealed it: the batch it is writing.
    last = SQL("SELECT e.position, e.{0} FROM {1} e ORDER BY e.position DESC LIMIT 1").format(login, entries)
    at_head = SQL("(position, session_user::text) = ({0})").format(last)
    # Timeline rows: each of an entry this login sealed, of the entry's stream, after the tracked position.
    timeline = SQL(
        "position > {0} AND EXISTS (SELECT 1 FROM {1} e WHERE e.position = {2}.position "
        'AND e.participant = {2}.participant COLLATE "default" AND e.{3} = session_user)'
    ).format(highest(TRACKING_TABLE), entries, Identifier(TIMELINE_TABLE), login)
    tracking = SQL("{0} AND position > {1}").format(at_head, highest(TRACKING_TABLE))
    # The clock row and the summaries of the batch at the head, until its clock row closes it.
    unclocked = SQL("{0} AND position > {1}").format(at_head, highest(CLOCK_TABLE))
    # ... of a participant the batch extends: an entry of theirs this login sealed since the clock's last row.
    own_summary = SQL(
        '{0} AND EXISTS (SELECT 1 FROM {1} e WHERE e.participant = {2}.participant COLLATE "default" '
        "AND e.position > {3} AND e.{4} = session_user)"
    ).format(unclocked, entries, Identifier(SUMMARY_TABLE), highest(CLOCK_TABLE), login)
    inserts: dict[str, list[tuple[str, Iterable[str], Composed]]] = {
        TIMELINE_TABLE: [("ledger_feed_own_entries", WRITERS, timeline)],
        TRACKING_TABLE: [("ledger_feed_at_head", WRITERS, tracking)],
        CLOCK_TABLE: [("ledger_feed_at_head", WRITERS, unclocked)],
        SUMMARY_TABLE: [
            ("ledger_summarise_anyone", ["data_manager"], unclocked),
            ("ledger_summarise_own_batch", [*SITE_ROLES, "coder"], own_summary),
        ],
    }
    read = SQL("FOR SELECT TO {0} USING (true)").format(_members(groups, ROLES))
    statements: list[Composed] = []
    for table in tables:
        target = SQL("{0}.{1}").format(s, Identifier(table))
        statements += [
            SQL("ALTER TABLE {0} ENABLE ROW LEVEL SECURITY").format(target),
            *_policy(target, "ledger_read", read),
        ]
        for policy, roles, check in inserts[table]:
            body = SQL("FOR INSERT TO {0} WITH CHECK ({1})").format(_members(groups, roles), check)
            statements += _policy(target, policy, body)
    return statements


def secured(cursor: Any, schema: str) -> bool:
    """Whether ``init`` made ``schema``'s groups, grants and functions (not on a ledger never secured)."""
    signature = f'"{schema}".{MEMBER_FUNCTION}(text,text,text)'
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL AS secured", (signature,))
    row = cursor.fetchone()
    return bool(row["secured"] if isinstance(row, dict) else row[0])


def _members(groups: dict[str, str], roles: Iterable[str]) -> Composed:
    """The groups of ``roles``, as a policy's or a grant's list of roles."""
    return SQL(", ").join(Identifier(groups[role]) for role in roles)


def _policy(target: Composed, name: str, body: Composed) -> list[Composed]:
    policy = Identifier(name)
    return [
        SQL("DROP POLICY IF EXISTS {0} ON {1}").format(policy, target),
        SQL("CREATE POLICY {0} ON {1} ").format(policy, target) + body,
    ]


def _functions(
    schema: str, table: Composed, entries: Composed, meta: Composed, groups: dict[str, str], writers: Composed
) -> list[Composed]:
    s = Identifier(schema)
    definer = SQL("LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp")
    refuse = SQL("USING ERRCODE = 'insufficient_privilege'")
    lock = SQL("{0}.{1}").format(s, Identifier(LOCK_FUNCTION))
    put = SQL("{0}.{1}").format(s, Identifier(META_FUNCTION))
    member = SQL("{0}.{1}").format(s, Identifier(MEMBER_FUNCTION))
    all_groups = Literal(list(groups.values()))
    site_prefix = Literal(site_group(schema, ""))
    return [
        SQL(
            "CREATE OR REPLACE FUNCTION {0}() RETURNS void {1} AS $$ BEGIN "
            "LOCK TABLE {2} IN EXCLUSIVE MODE; END $$"
        ).format(lock, definer, table),
        SQL(
            "CREATE OR REPLACE FUNCTION {0}(k text, v bytea) RETURNS void {1} AS $$ BEGIN "
            "IF k NOT IN ('frontier', 'chain') THEN "
            "RAISE EXCEPTION 'permission denied: % is not a seal key', k {2}; END IF; "
            "IF k = 'chain' AND v IS DISTINCT FROM "
            "(SELECT chain_hash FROM {3} ORDER BY position DESC LIMIT 1) THEN "
            "RAISE EXCEPTION 'permission denied: the chain head is the last entry''s chain hash' {2}; "
            "END IF; "
            "INSERT INTO {4} (key, value) VALUES (k, v) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value; END $$"
        ).format(put, definer, refuse, entries, meta),
        SQL(
            "CREATE OR REPLACE FUNCTION {0}(login text, ledger_role text, site text) RETURNS void {1} AS $$ "
            "DECLARE held text; BEGIN "
            "IF login = ANY ({2}) OR starts_with(login, {3}) THEN "
            "RAISE EXCEPTION 'permission denied: % is a group of the ledger', login {4}; END IF; "
            "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN "
            "EXECUTE format('CREATE ROLE %I LOGIN', login); END IF; "
            "FOR held IN SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = login "
            "AND (g.rolname = ANY ({2}) OR starts_with(g.rolname, {3})) LOOP "
            "EXECUTE format('REVOKE %I FROM %I', held, login); END LOOP; "
            "IF ledger_role IS NOT NULL THEN "
            "EXECUTE format('GRANT %I TO %I', {5} || ledger_role, login); END IF; "
            "IF site IS NOT NULL THEN EXECUTE format('GRANT %I TO %I', {3} || site, login); END IF; "
            "END $$"
        ).format(member, definer, all_groups, site_prefix, refuse, Literal(group(schema, ""))),
        SQL("REVOKE ALL ON FUNCTION {0}(), {1}(text, bytea), {2}(text, text, text) FROM PUBLIC").format(
            lock, put, member
        ),
        SQL("GRANT EXECUTE ON FUNCTION {0}(), {1}(text, bytea) TO {2}").format(lock, put, writers),
        SQL("GRANT EXECUTE ON FUNCTION {0}(text, text, text) TO {1}").format(
            member, Identifier(groups["data_manager"])
        ),
    ]


def existing_roles(cursor: Any, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are roles of the cluster."""
    cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(names)])
    return {row["rolname"] if isinstance(row, dict) else row[0] for row in cursor.fetchall()}
