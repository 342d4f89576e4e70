"""The record of a refused attempt, sealed by the database for any login of the ledger (issue 12, item 7).

Monitors and auditors may only ``SELECT`` (issue 12, item 3), yet their refused
attempts must be on record like anyone's.  :data:`SEAL_REFUSAL` is a ``SECURITY
DEFINER`` function of the schema's owner that every ledger group may run; it
appends exactly one row, and only one the ledger itself would write for the
caller's refusal:

- the stream is ``REFUSALS``, the version the stream's next, the topic the
  refusals' own (with the stream's topic in the state of its first event);
- the state is the transcoder's plain MessagePack (no cipher, no compressor: the
  function exists only on a store ``init`` found so), a map of ``timestamp``,
  ``record`` and, for the first event, ``originator_topic``; the record is an
  :class:`~ledger.domain.events.ActionRefused` with only ``type``, ``id``,
  ``user``, ``action``, ``reason`` and ``participant``, its ``id`` the ledger's
  (``REFUSALS#<version>``), its ``user`` the session user, each field valid as
  the schema says (:mod:`ledger.domain.events`);
- anything else is refused with SQLSTATE 42501 (permission denied), and a
  version another refusal took meanwhile with 23505, which the application
  answers by reading again (:meth:`~ledger.application.trial_ledger.TrialLedger.write`).

It then seals the row as :mod:`ledger.storage.seal` does, in SQL: under the table
lock, at the next position, the ``ledger_entries`` row (event id, stream, the
SHA-256 of the record's bytes, the RFC 6962 leaf hash of
:func:`~ledger.storage.seal.canonical_entry`'s MessagePack, the chain hash), whose
``login`` the database fills with the session user; the Merkle frontier and chain
head in ``ledger_meta`` (:meth:`ledger.evidence.merkle.Frontier.extend`); and the
read model's row when the view covers everything before it
(:meth:`ledger.storage.feed.TimelineFeed.feed`), with the batch's clock row when
the summaries do too (:mod:`ledger.storage.summaries`), as the owner, whom the
read model's row-level security does not judge (:func:`ledger.storage.grants.read_model_statements`).
``verify`` recomputes
all of it from the events, and the tests compare the SQL encoders with the
Python ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.domain.events import ActionRefused, ParticipantCode, Text, UserName
from ledger.storage.feed import TIMELINE_TABLE, TRACKING_TABLE
from ledger.storage.seal import ENTRIES_TABLE, GENESIS, REFUSALS_STREAM
from ledger.storage.summaries import CLOCK_TABLE, SUMMARY_TABLE

SEAL_REFUSAL = "ledger_seal_refusal"
# The function's signature, as ``to_regprocedure`` and ``GRANT`` name it.
SEAL_REFUSAL_ARGUMENTS = "(bigint, text, bytea)"
# The MessagePack encoders and the frontier's extension the function is made of (tests call them).
UINT, STR, BIN, FRONTIER_APPEND = "ledger_mp_uint", "ledger_mp_str", "ledger_mp_bin", "ledger_frontier_append"
READ_STR = "ledger_mp_read_str"
BE32 = "ledger_be32"
READ_TIME = "ledger_mp_read_time"
HELPERS = {
    UINT: "(bigint)",
    STR: "(text)",
    BIN: "(bytea)",
    FRONTIER_APPEND: "(bytea, bytea)",
    READ_STR: "(bytea, integer)",
    BE32: "(bytea, integer)",
    READ_TIME: "(bytea, integer)",
}
# Bytes of a refusal's stored state: two texts of at most 500 characters (4 bytes each at most),
# and the rest short.
STATE_LIMIT = 8192


@dataclass(frozen=True)
class RefusalTopics:
    """The topics of the ``REFUSALS`` stream: its aggregate's, its first event's and every later one's."""

    stream: str
    opened: str
    recorded: str


def _meta(annotation: Any) -> Any:
    return get_args(annotation)[1]


def statements(schema: str, events: str, topics: RefusalTopics) -> list[Composed]:
    """The statements that make (or replace) :data:`SEAL_REFUSAL` and its helpers in ``schema``."""
    s = Identifier(schema)
    names = {
        "schema": s,
        "events": SQL("{0}.{1}").format(s, Identifier(events)),
        "entries": SQL("{0}.{1}").format(s, Identifier(ENTRIES_TABLE)),
        "meta": SQL("{0}.ledger_meta").format(s),
        "timeline": SQL("{0}.{1}").format(s, Identifier(TIMELINE_TABLE)),
        "tracking": SQL("{0}.{1}").format(s, Identifier(TRACKING_TABLE)),
        "timeline_name": Literal(f'"{schema}".{TIMELINE_TABLE}'),
        "tracking_name": Literal(f'"{schema}".{TRACKING_TABLE}'),
        "clock": SQL("{0}.{1}").format(s, Identifier(CLOCK_TABLE)),
        "clock_name": Literal(f'"{schema}".{CLOCK_TABLE}'),
        "summary_name": Literal(f'"{schema}".{SUMMARY_TABLE}'),
        "events_name": Literal(f'"{schema}"."{events}"'),
        **{
            placeholder: SQL("{0}.{1}").format(s, Identifier(name))
            for placeholder, name in (
                ("uint", UINT),
                ("str", STR),
                ("bin", BIN),
                ("frontier_append", FRONTIER_APPEND),
                ("read_str", READ_STR),
                ("be32", BE32),
                ("read_time", READ_TIME),
            )
        },
        "seal": SQL("{0}.{1}").format(s, Identifier(SEAL_REFUSAL)),
        "stream": Literal(REFUSALS_STREAM),
        "stream_topic": Literal(topics.stream),
        "opened": Literal(topics.opened),
        "recorded": Literal(topics.recorded),
        "refused": Literal(ActionRefused.__struct_config__.tag),
        "genesis": Literal(GENESIS),
        "limit": Literal(STATE_LIMIT),
        "text_limit": Literal(_meta(Text).max_length),
        "free_text": Literal(_meta(Text).pattern),
        "user_name": Literal(_meta(UserName).pattern),
        "participant_code": Literal(_meta(ParticipantCode).pattern),
    }
    pure = SQL("LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp")
    made = [SQL(body).format(pure=pure, **names) for body in _HELPER_BODIES]
    made.append(SQL(_SEAL_BODY).format(**names))
    helpers = SQL(", ").join(
        SQL("{0}.{1}{2}").format(s, Identifier(name), SQL(arguments)) for name, arguments in HELPERS.items()
    )
    made.append(
        SQL("REVOKE ALL ON FUNCTION {0}, {1}{2} FROM PUBLIC").format(
            helpers, names["seal"], SQL(SEAL_REFUSAL_ARGUMENTS)
        )
    )
    return made


def drop_statements(schema: str) -> list[Composed]:
    """The statements that remove :data:`SEAL_REFUSAL` (a store whose states are enciphered or compressed)."""
    return [
        SQL("DROP FUNCTION IF EXISTS {0}.{1}{2}").format(
            Identifier(schema), Identifier(SEAL_REFUSAL), SQL(SEAL_REFUSAL_ARGUMENTS)
        )
    ]


def grant_statement(schema: str, groups: Composed) -> Composed:
    """Every ledger group may run :data:`SEAL_REFUSAL` (and nothing else of it)."""
    return SQL("GRANT EXECUTE ON FUNCTION {0}.{1}{2} TO {3}").format(
        Identifier(schema), Identifier(SEAL_REFUSAL), SQL(SEAL_REFUSAL_ARGUMENTS), groups
    )


# MessagePack as msgspec (and ``msgpack.packb(..., use_bin_type=True)``) writes it: the smallest format.
_HELPER_BODIES = (
    """CREATE OR REPLACE FUNCTION {uint}(n bigint) RETURNS bytea {pure} AS $$ BEGIN
    IF n < 0 THEN RAISE EXCEPTION 'a negative number is not a position'; END IF;
    IF n < 128 THEN RETURN set_byte('\\x00'::bytea, 0, n::integer); END IF;
    IF n < 256 THEN RETURN '\\xcc'::bytea || set_byte('\\x00'::bytea, 0, n::integer); END IF;
    IF n < 65536 THEN RETURN '\\xcd'::bytea || substring(int8send(n) FROM 7); END IF;
    IF n < 4294967296 THEN RETURN '\\xce'::bytea || substring(int8send(n) FROM 5); END IF;
    RETURN '\\xcf'::bytea || int8send(n); END $$""",
    """CREATE OR REPLACE FUNCTION {str}(t text) RETURNS bytea {pure} AS $$
    DECLARE b bytea := convert_to(t, 'UTF8'); n bigint; BEGIN
    n := octet_length(b);
    IF n < 32 THEN RETURN set_byte('\\x00'::bytea, 0, 160 + n::integer) || b; END IF;
    IF n < 256 THEN RETURN '\\xd9'::bytea || substring(int8send(n) FROM 8) || b; END IF;
    IF n < 65536 THEN RETURN '\\xda'::bytea || substring(int8send(n) FROM 7) || b; END IF;
    RETURN '\\xdb'::bytea || substring(int8send(n) FROM 5) || b; END $$""",
    """CREATE OR REPLACE FUNCTION {bin}(b bytea) RETURNS bytea {pure} AS $$
    DECLARE n bigint := octet_length(b); BEGIN
    IF n < 256 THEN RETURN '\\xc4'::bytea || substring(int8send(n) FROM 8) || b; END IF;
    IF n < 65536 THEN RETURN '\\xc5'::bytea || substring(int8send(n) FROM 7) || b; END IF;
    RETURN '\\xc6'::bytea || substring(int8send(n) FROM 5) || b; END $$""",
    # Frontier.to_bytes: the 8-byte big-endian size, then the perfect subtrees' roots, largest first.
    """CREATE OR REPLACE FUNCTION {frontier_append}(frontier bytea, leaf bytea) RETURNS bytea {pure} AS $$
    DECLARE size bigint := 0; s bigint; roots bytea := ''::bytea; h bytea := leaf; BEGIN
    IF frontier IS NOT NULL THEN
        size := ('x' || encode(substring(frontier FROM 1 FOR 8), 'hex'))::bit(64)::bigint;
        roots := substring(frontier FROM 9);
    END IF;
    s := size;
    WHILE s & 1 = 1 LOOP
        h := sha256('\\x01'::bytea || substring(roots FROM octet_length(roots) - 31) || h);
        roots := substring(roots FROM 1 FOR octet_length(roots) - 32);
        s := s >> 1;
    END LOOP;
    RETURN int8send(size + 1) || roots || h; END $$""",
    # The unsigned big-endian 32-bit number at byte ``p`` (from 0).
    """CREATE OR REPLACE FUNCTION {be32}(b bytea, p integer) RETURNS bigint {pure} AS $$ BEGIN
    RETURN (get_byte(b, p)::bigint << 24) | (get_byte(b, p + 1)::bigint << 16)
        | (get_byte(b, p + 2)::bigint << 8) | get_byte(b, p + 3)::bigint; END $$""",
    # One MessagePack timestamp (of the three sizes) at byte ``p``: microseconds since 1970, as the
    # read model's clock keeps a recorded time (ledger.storage.summaries.micros), and the byte after it.
    """CREATE OR REPLACE FUNCTION {read_time}(b bytea, p integer, OUT micros bigint, OUT next integer)
    {pure} AS $$ DECLARE h integer := get_byte(b, p); high_word bigint; BEGIN
    IF h = 214 AND get_byte(b, p + 1) = 255 THEN
        micros := {be32}(b, p + 2) * 1000000;
        next := p + 6;
    ELSIF h = 215 AND get_byte(b, p + 1) = 255 THEN
        high_word := {be32}(b, p + 2);
        micros := ((high_word & 3) * 4294967296 + {be32}(b, p + 6)) * 1000000 + (high_word >> 2) / 1000;
        next := p + 10;
    ELSIF h = 199 AND get_byte(b, p + 1) = 12 AND get_byte(b, p + 2) = 255 THEN
        micros := ('x' || encode(substring(b FROM p + 8 FOR 8), 'hex'))::bit(64)::bigint * 1000000
            + {be32}(b, p + 3) / 1000;
        next := p + 15;
    ELSE RAISE EXCEPTION 'the timestamp is not a MessagePack timestamp'; END IF; END $$""",
    # One MessagePack string at byte ``p`` (from 0): its text and the byte after it.
    """CREATE OR REPLACE FUNCTION {read_str}(b bytea, p integer, OUT val text, OUT next integer) {pure} AS $$
    DECLARE h integer := get_byte(b, p); n integer; k integer; BEGIN
    IF h BETWEEN 160 AND 191 THEN n := h - 160; k := 1;
    ELSIF h = 217 THEN n := get_byte(b, p + 1); k := 2;
    ELSIF h = 218 THEN n := get_byte(b, p + 1) * 256 + get_byte(b, p + 2); k := 3;
    ELSE RAISE EXCEPTION 'byte % is not the start of a short string', p; END IF;
    IF p + k + n > octet_length(b) THEN RAISE EXCEPTION 'the string at byte % runs past the end', p; END IF;
    val := convert_from(substring(b FROM p + k + 1 FOR n), 'UTF8');
    next := p + k + n; END $$""",
)

_SEAL_BODY = """CREATE OR REPLACE FUNCTION {seal}(stream_version bigint, event_topic text, stored_state bytea)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p integer := 1; h integer; i integer; j integer; field text; field_value text;
    seen text[] := ARRAY[]::text[]; record_fields text[]; record_from integer; record_to integer;
    timestamped boolean := false; stream_topic text; refusal_type text; refusal_id text; refusal_user text;
    refusal_action text; refusal_reason text; refusal_participant text;
    at_position bigint; chain_head bytea; head_frontier bytea; leaf bytea; tracked bigint;
    moment bigint; clock_at bigint; clock_high bigint; clock_versions text;
BEGIN
    BEGIN
        IF octet_length(stored_state) > {limit} THEN
            RAISE EXCEPTION 'the state is longer than a refusal''s';
        END IF;
        h := get_byte(stored_state, 0);
        IF h NOT BETWEEN 129 AND 143 THEN RAISE EXCEPTION 'the state is not a short map'; END IF;
        FOR i IN 1 .. h - 128 LOOP
            SELECT r.val, r.next INTO field, p FROM {read_str}(stored_state, p) r;
            IF field = ANY (seen) THEN RAISE EXCEPTION 'the state has % twice', field; END IF;
            seen := seen || field;
            IF field = 'timestamp' THEN
                SELECT r.micros, r.next INTO moment, p FROM {read_time}(stored_state, p) r;
                timestamped := true;
            ELSIF field = 'originator_topic' THEN
                SELECT r.val, r.next INTO stream_topic, p FROM {read_str}(stored_state, p) r;
            ELSIF field = 'record' THEN
                record_from := p;
                h := get_byte(stored_state, p);
                IF h NOT BETWEEN 129 AND 143 THEN RAISE EXCEPTION 'the record is not a short map'; END IF;
                p := p + 1;
                record_fields := ARRAY[]::text[];
                FOR j IN 1 .. h - 128 LOOP
                    SELECT r.val, r.next INTO field, p FROM {read_str}(stored_state, p) r;
                    IF field = ANY (record_fields) THEN
                        RAISE EXCEPTION 'the record has % twice', field;
                    END IF;
                    record_fields := record_fields || field;
                    SELECT r.val, r.next INTO field_value, p FROM {read_str}(stored_state, p) r;
                    CASE field
                        WHEN 'type' THEN refusal_type := field_value;
                        WHEN 'id' THEN refusal_id := field_value;
                        WHEN 'user' THEN refusal_user := field_value;
                        WHEN 'action' THEN refusal_action := field_value;
                        WHEN 'reason' THEN refusal_reason := field_value;
                        WHEN 'participant' THEN refusal_participant := field_value;
                        ELSE RAISE EXCEPTION 'a refusal has no field %', field;
                    END CASE;
                END LOOP;
                record_to := p;
            ELSE
                RAISE EXCEPTION 'a stored state has no %', field;
            END IF;
        END LOOP;
        IF p <> octet_length(stored_state) THEN RAISE EXCEPTION 'bytes follow the state'; END IF;
        IF NOT timestamped OR record_from IS NULL THEN
            RAISE EXCEPTION 'the state needs its timestamp and its record';
        END IF;
        IF stream_version IS NULL OR stream_version < 1
            OR event_topic IS DISTINCT FROM (CASE WHEN stream_version = 1 THEN {opened} ELSE {recorded} END)
            OR stream_topic IS DISTINCT FROM (CASE WHEN stream_version = 1 THEN {stream_topic} END) THEN
            RAISE EXCEPTION 'version % of the refusals'' stream has other topics', stream_version;
        END IF;
        IF refusal_type IS DISTINCT FROM {refused} THEN
            RAISE EXCEPTION 'the record is a %, not a refusal', refusal_type;
        END IF;
        IF refusal_id IS DISTINCT FROM {stream} || '#' || stream_version THEN
            RAISE EXCEPTION 'its id is %, not the ledger''s %', refusal_id, {stream} || '#' || stream_version;
        END IF;
        IF refusal_user IS DISTINCT FROM session_user OR refusal_user !~ {user_name} THEN
            RAISE EXCEPTION 'it names %, but you are logged in as %', refusal_user, session_user;
        END IF;
        IF refusal_action IS NULL OR refusal_reason IS NULL
            OR char_length(refusal_action) NOT BETWEEN 1 AND {text_limit}
            OR char_length(refusal_reason) NOT BETWEEN 1 AND {text_limit}
            OR refusal_action !~ {free_text} OR refusal_reason !~ {free_text} THEN
            RAISE EXCEPTION 'a refusal''s action and reason are texts of 1 to {text_limit} characters';
        END IF;
        IF refusal_participant !~ {participant_code} THEN
            RAISE EXCEPTION 'participant % is not a participant code', refusal_participant;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'permission denied: not the record of your own refused attempt: %', SQLERRM
            USING ERRCODE = 'insufficient_privilege';
    END;
    LOCK TABLE {events} IN EXCLUSIVE MODE;
    IF stream_version <> (SELECT COALESCE(MAX(e.originator_version), 0) + 1 FROM {events} e
                          WHERE e.originator_id = {stream}) THEN
        RAISE EXCEPTION 'version % of the refusals'' stream is taken or not the next', stream_version
            USING ERRCODE = 'unique_violation';
    END IF;
    SELECT COALESCE(MAX(e.notification_id), 0) + 1 INTO at_position FROM {events} e;
    INSERT INTO {events} (notification_id, originator_id, originator_version, topic, state)
        VALUES (at_position, {stream}, stream_version, event_topic, stored_state);
    PERFORM setval(pg_get_serial_sequence({events_name}, 'notification_id'), at_position);
    SELECT COALESCE((SELECT m.value FROM {meta} m WHERE m.key = 'chain'), {genesis}) INTO chain_head;
    SELECT m.value INTO head_frontier FROM {meta} m WHERE m.key = 'frontier';
    leaf := sha256('\\x0095'::bytea || {uint}(at_position) || {str}({stream}) || {uint}(stream_version)
                   || {str}(event_topic) || {bin}(stored_state));
    chain_head := sha256(chain_head || leaf);
    INSERT INTO {entries} (position, event_id, participant, content_hash, leaf_hash, chain_hash)
        VALUES (at_position, refusal_id, {stream},
                sha256(substring(stored_state FROM record_from + 1 FOR record_to - record_from)),
                leaf, chain_head);
    INSERT INTO {meta} AS m (key, value)
        VALUES ('frontier', {frontier_append}(head_frontier, leaf)), ('chain', chain_head)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
    IF to_regclass({timeline_name}) IS NOT NULL AND to_regclass({tracking_name}) IS NOT NULL THEN
        SELECT COALESCE(MAX(t.position), 0) INTO tracked FROM {tracking} t;
        IF tracked = at_position - 1 THEN
            INSERT INTO {timeline} (participant, position, state)
                VALUES ({stream}, at_position, stored_state);
            INSERT INTO {tracking} (position) VALUES (at_position);
            -- The batch's clock row, as ledger.storage.summaries writes it: a refusal is no
            -- participant's, adds no summary and adopts no protocol version.
            IF to_regclass({clock_name}) IS NOT NULL AND to_regclass({summary_name}) IS NOT NULL THEN
                SELECT c.position, c.high, c.versions INTO clock_at, clock_high, clock_versions
                    FROM {clock} c ORDER BY c.position DESC LIMIT 1;
                IF clock_at = at_position - 1 THEN
                    INSERT INTO {clock} (position, recorded_at, high, early, versions, summaries)
                        VALUES (at_position, moment, GREATEST(moment, clock_high),
                                CASE WHEN moment < clock_high THEN moment END, clock_versions, 0);
                END IF;
            END IF;
        END IF;
    END IF;
    RETURN at_position;
END $$"""
