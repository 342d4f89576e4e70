"""Who may append what: registered users and roles, refused attempts, the database lock (issue #6).

Two streams of the ledger are not a participant's: ``USERS`` (:class:`Registry`,
one :class:`~ledger.domain.events.UserRegistered` per user, then their
:class:`~ledger.domain.events.UserUpdated` and
:class:`~ledger.domain.events.UserDeactivated`, issue 12) and ``TRIAL``
(:class:`Trial`: :class:`~ledger.domain.events.DatabaseLocked`,
:class:`~ledger.domain.events.DatabaseUnlocked` and every
:class:`~ledger.domain.events.ActionRefused`).  Their events are sealed like any other
(SPEC section 5) and show in the audit trail.

Bootstrap.  A ledger without registered users is *open*: ``--user NAME`` names
whoever acts and nothing is refused for who they are (what the README, the demo
and the tests before issue #6 rely on).  The first ``user add`` must register a
``data_manager``; from then on access control holds for every append:

- an unregistered user is refused;
- ``site_staff`` and ``investigator`` append only for participants of their own
  site, and enter data only as that site;
- ``monitor`` and ``auditor`` read only;
- a deactivated user can do nothing;
- only a ``data_manager`` locks, unlocks, registers, updates and deactivates
  users (never the last active data manager); data managers may append for
  every site (corrections during data cleaning);
- signatures: ``reviewed`` by site staff, investigators (own site) and data
  managers; ``approved`` by investigators (own site) and data managers;
  ``investigator_attestation`` by investigators of the participant's site.

A refusal exits 3 (SPEC section 6) and is recorded as an ``ActionRefused`` with
who tried, what and why, in the ``REFUSALS`` stream (:class:`Refusals`; the
``TRIAL`` stream holds those of older versions), also while the ledger is locked:
the lock blocks clinical appends, not the record of a refusal, and an append the
lock refuses is itself recorded (issue 12, item 7); on PostgreSQL a login that is not
the owner, a ``SELECT``-only one included, records its own through the owner's
function (:mod:`ledger.storage.refusal_seal`).  Reading is not restricted: anyone
who can open the store can read it.  The users are read as ``verify`` judges them
(:meth:`Users.admit`): a row of the ``USERS`` stream written past the ledger's
checks grants nothing.

The lock itself is enforced by the seal inside the write transaction
(:mod:`ledger.storage.seal`); :func:`lock_state` tells read models whether the data
were locked at a given moment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Self, get_args

import msgspec
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import BaseAggregate, CanInitAggregate
from eventsourcing.utils import get_topic, register_topic

from ledger.domain.entry import Entry
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import (
    SITE_ROLES,
    ActionRefused,
    AdverseEventCoded,
    ClinicalRecord,
    DatabaseLocked,
    DatabaseUnlocked,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    KeyRegistered,
    ParticipantCode,
    ProtocolAdopted,
    Record,
    RecordSigned,
    Role,
    UserDeactivated,
    UserName,
    UserRegistered,
    UserUpdated,
    convert,
    fill,
    lenient,
    utc_text,
)
from ledger.domain.participant import EVENT_CLASS, RecordEvent, ledger_event_id
from ledger.domain.rules.sites import site_of
from ledger.storage.seal import REFUSALS_STREAM

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

TEXT_LIMIT = 500  # ``Text`` fields of the schema (SPEC section 6)


class RecordLog(BaseAggregate[str]):
    """A stream of the ledger's own records, named :attr:`STREAM`, opened by its first record."""

    STREAM: ClassVar[str]

    class Event(RecordEvent):
        pass

    @dataclass(frozen=True)
    class Opened(Event, CanInitAggregate[str]):
        originator_topic: str

    class Recorded(Event):
        pass

    def take(self, record: Record) -> None:
        """Evolve the state with one recorded event (nothing to keep here)."""

    @classmethod
    def load(cls, ledger: TrialLedger) -> Self | None:
        """The stream as stored, or None before its first record."""
        try:
            return ledger.repository.get(cls.STREAM)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    @classmethod
    def append(cls, log: Self | None, record: Record, at: dt.datetime) -> Self:
        """``log`` (or a new stream) with ``record`` appended under the ledger's next event id."""
        if log is None:
            record = fill(record, id=ledger_event_id(cls.STREAM, cls.INITIAL_VERSION))
            return cls._create(cls.Opened, id=cls.STREAM, record=record, timestamp=at)
        record = fill(record, id=ledger_event_id(log.id, log.version + 1))
        log.trigger_event(cls.Recorded, record=record, timestamp=at)
        return log


class Trial(RecordLog):
    """Trial-level events: lock and unlock (and the refused attempts older versions recorded here)."""

    STREAM = "TRIAL"


class Refusals(RecordLog):
    """Every refused attempt since issue 12 (item 7): a stream of its own, appended to during a lock too.

    Refusals recorded before it are in the ``TRIAL`` stream; the lock is what
    that stream's last event says (:mod:`ledger.storage.seal`), so no refusal
    goes there any more.
    """

    STREAM = REFUSALS_STREAM


class Users:
    """The registered users, by name, as their records leave them (issue 12, item 2).

    ``users`` holds every user ever registered, with the role and site of their
    latest :class:`~ledger.domain.events.UserUpdated`; ``deactivated`` those
    whose access has ended; ``keys`` each one's latest registered public key.
    Folding records one by one into new ``Users`` gives the users as they stood
    at any moment.  A record the ledger would not have stored is skipped
    (:meth:`admit`): it grants nothing, and ``verify`` names it.
    """

    def __init__(self) -> None:
        self.users: dict[str, UserRegistered] = {}
        self.deactivated: dict[str, UserDeactivated] = {}
        self.keys: dict[str, str] = {}  # each user's signing key in force (issue 12, item 6)

    def admit(self, record: Record, login: str | None = None) -> str | None:
        """Apply one record of the ``USERS`` stream unless the ledger would not have stored it; why not.

        Skipped (issue 12, items 2 and 8): a record its ``user`` was not allowed to
        append with the users as they stand (:func:`refusal`, the rule its write
        was checked by), or that is no user's record; and on PostgreSQL one whose
        ``user`` is not ``login``, the login the database recorded as sealing the
        row (None: no such check, as for a superuser's row or one sealed before
        ``init`` secured the schema; ``""``: no entry seals the row).  Such a row
        got past the ledger's checks (SQL typed by hand, a modified client).
        """
        reason = _sealed_by_another(record, login) or self.judge(record, Registry.STREAM)
        if reason is None and not isinstance(record, _USER_RECORDS):
            reason = f"{record.type} is not a record of the users' stream"
        if reason is not None:
            return reason
        if isinstance(record, UserRegistered):
            self.users[record.name] = record
            if record.public_key is not None:
                self.keys[record.name] = record.public_key
        elif isinstance(record, KeyRegistered):
            self.keys[record.name] = record.public_key
        elif isinstance(record, UserUpdated):
            with lenient():
                self.users[record.name] = msgspec.structs.replace(
                    self.users[record.name], role=record.role, user_site=record.user_site
                )
        else:
            assert isinstance(record, UserDeactivated)
            self.deactivated[record.name] = record
        return None

    def judge(self, record: Record, stream: str) -> str | None:
        """Why ``record``, appended to ``stream`` now, should have been refused; None if it was allowed."""
        return _replayed_refusal(self if self.users else None, record, stream)

    def active(self, role: str | None = None) -> list[UserRegistered]:
        """The users not deactivated (of ``role`` only, if given), in registration order."""
        return [
            member
            for name, member in self.users.items()
            if name not in self.deactivated and role in (None, member.role)
        ]


class Registry(Users, RecordLog):
    """The ``USERS`` stream: the registered users as its records leave them."""

    STREAM = "USERS"

    def __init__(self) -> None:
        Users.__init__(self)
        self.records: list[Record] = []  # every record of the stream, by version (1 first)

    def take(self, record: Record) -> None:
        """Keep one record of the stream, and apply it if the ledger would have stored it (:meth:`admit`)."""
        self.records.append(record)
        self.admit(record)

    @classmethod
    def load(cls, ledger: TrialLedger) -> Self | None:
        """The stream as stored, without the rows PostgreSQL says another login sealed (issue 12, item 2).

        The logins are read after the rows, so every row read is sealed by then.
        One query on the stream's own rows: the ledger is not scanned.
        """
        registry = super().load(ledger)
        if registry is None:
            return None
        logins = {version: login for _, version, login in ledger.sealed_logins(cls.STREAM)}
        records = registry.records
        if any(logins.get(version, record.user) != record.user for version, record in enumerate(records, 1)):
            Users.__init__(registry)
            for version, record in enumerate(records, 1):
                registry.admit(record, logins.get(version))
        return registry


class ProtocolLog(RecordLog):
    """The adopted protocol versions (SPEC section 2), in recorded order."""

    STREAM = "PROTOCOL"


LOG_STREAMS = (Trial.STREAM, Registry.STREAM, ProtocolLog.STREAM, Refusals.STREAM)

# Events stored before the package's layers were made visible name these
# classes under module ``ledger.access`` (see ``ledger.domain.participant``).
for _log in (Trial, Registry):
    register_topic(f"ledger.access:{_log.__qualname__}", _log)


@dataclass(frozen=True)
class Permission:
    """An action: what it does (for messages) and the roles that may do it."""

    what: str
    roles: tuple[str, ...]


PERMISSIONS: dict[str, Permission] = {
    "write": Permission("append clinical data", ("site_staff", "investigator", "data_manager")),
    "lock": Permission("lock the ledger", ("data_manager",)),
    "unlock": Permission("unlock the ledger", ("data_manager",)),
    "user add": Permission("register users", ("data_manager",)),
    "user update": Permission("change users' roles and sites", ("data_manager",)),
    "user deactivate": Permission("deactivate users", ("data_manager",)),
    "protocol adopt": Permission("adopt protocol versions", ("data_manager",)),
    "sign reviewed": Permission("sign as reviewed", ("site_staff", "investigator", "data_manager")),
    "sign approved": Permission("sign as approved", ("investigator", "data_manager")),
    "sign investigator_attestation": Permission("sign the investigator attestation", ("investigator",)),
    "code": Permission("code adverse events", ("coder", "data_manager")),
    # Every active user may register their own key (and only their own: issue 12, item 6).
    "key new": Permission("register a signing key", get_args(Role)),
}


def refusal(
    users: Users | None,
    user: str | None,
    action: str,
    participant: str | None = None,
    site: str | None = None,
) -> str | None:
    """Why ``user`` may not do ``action`` (a key of :data:`PERMISSIONS`); None if they may.

    ``participant`` is whom the action concerns, ``site`` the site it is
    entered as.  An open ledger (``users`` None) refuses nothing.
    """
    if users is None:
        return None
    member = users.users.get(user or "")
    if member is None:
        return f"user {user!r} is not registered (data managers register users: `trial-ledger user add`)"
    if member.name in users.deactivated:
        return f"user {member.name} is deactivated ({users.deactivated[member.name].reason})"
    permission = PERMISSIONS[action]
    if member.role not in permission.roles:
        return f"{member.name} ({member.role}) may not {permission.what}"
    if member.role in SITE_ROLES:
        for other in (site_of(participant) if participant else None, site):
            if other is not None and other != member.user_site:
                whom = f" (participant {participant})" if participant else ""
                who = f"{member.name} ({member.role} of {member.user_site})"
                return f"{who} may not act for site {other}{whom}"
    return None


def refuse(
    ledger: TrialLedger, problems: list[str], *, action: str, user: str | None, participant: str | None = None
) -> NoReturn:
    """Record the refused attempt in the ``REFUSALS`` stream, then raise :class:`Refused` (exit 3).

    Recorded during a lock too (issue 12, item 7): a refusal is not clinical data.
    """
    reason = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
    fields: dict[str, Any] = {"action": _clip(action), "reason": _clip(reason)}
    # What was attempted is kept only when it is valid: the refusal itself must be.
    fields["user"] = user if _is_valid(user, UserName) else None
    fields["participant"] = participant if _is_valid(participant, ParticipantCode) else None
    record = checked(ActionRefused, fields)
    # A store that takes no write at all (a read-only file, a hot standby) cannot keep the
    # record, nor can a SELECT-only login where init made no function for it (enciphered or
    # compressed states): the refusal stands all the same.
    with contextlib.suppress(Refused):
        ledger.write(lambda: _store(ledger, Refusals.append(Refusals.load(ledger), record, ledger.clock())))
    raise Refused(problems[0], problems=problems)


def require(
    ledger: TrialLedger,
    users: Registry | None,
    user: str | None,
    action: str,
    participant: str | None = None,
) -> None:
    """Refuse (and record) ``action`` unless ``user`` may do it."""
    reason = refusal(users, user, action, participant)
    if reason is not None:
        refuse(ledger, [reason], action=action, user=user, participant=participant)


def checked(record_type: type[Record], fields: dict[str, Any]) -> Any:
    """A record of ``record_type`` validated like any input (exit 2 naming the field)."""
    try:
        return convert({k: v for k, v in fields.items() if v is not None}, record_type)
    except InvalidRecord as exc:
        raise InvalidInput(str(exc)) from None


def acting(ledger: TrialLedger, user: str | None, action: str) -> str:
    """Who acts to do ``action`` (SPEC section 6, ``--user``; issue 12, items 1 and 9).

    On PostgreSQL the authenticated login (``session_user``): a ``user`` naming
    someone else is refused (exit 3) and the attempt recorded under the login,
    except for a superuser, who can become any role anyway.  On SQLite ``user``,
    else the operating-system user.
    """
    login = ledger.login
    if login is None:
        return user or _os_user()
    if user is None or user == login.name:
        return login.name
    if login.superuser:
        return user
    problem = f"user: you are logged in as {login.name}; --user {user} names someone else"
    refuse(ledger, [problem], action=action, user=login.name)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise InvalidInput("user: required (give --user or TRIAL_LEDGER_USER)") from None


def secure(ledger: TrialLedger) -> bool:
    """``init`` by the schema's owner: PostgreSQL's groups, grants and policies (issue 12, items 2-3).

    Every site of the protocol file gets its group, and every group the function
    that seals the record of its own refused attempt (item 7).  False (nothing
    done) on SQLite and for a login that does not own the schema.
    """
    login = ledger.login
    if login is None or not login.owner:
        return False
    from ledger.storage.refusal_seal import RefusalTopics  # PostgreSQL's: SQLite never loads psycopg

    topics = RefusalTopics(get_topic(Refusals), get_topic(Refusals.Opened), get_topic(Refusals.Recorded))
    coding = [get_topic(EVENT_CLASS[AdverseEventCoded])]
    ledger.recorder.secure(list(ledger.protocol.sites), topics, coding)  # type: ignore[attr-defined]
    return True


def _in_database(ledger: TrialLedger, name: str, role: str | None, site: str | None) -> None:
    """Make the database's groups say what the ``USERS`` stream is about to (issue 12, item 2).

    Before the event is saved, and idempotent: a save that fails leaves the
    login as it would be after a retry.  Nothing on SQLite.
    """
    if ledger.login is not None:
        ledger.recorder.set_member(name, role, site)  # type: ignore[attr-defined]


# -- use cases ---------------------------------------------------------------------------------


def register(
    ledger: TrialLedger,
    user: str | None,
    *,
    name: str,
    full_name: str,
    role: str,
    user_site: str | None,
) -> str:
    """``user add``: register ``name`` with a role and site; returns the event id.

    The first user of an open ledger must be a ``data_manager``; after that only
    data managers register users.  No key: each user makes and registers their
    own (``key new``, issue 12, item 6).  Two users with the same full name are
    refused, so that a signature's printed name is one person's.
    """
    actor = acting(ledger, user, "user add")
    _check_site(ledger, user_site)
    fields = {"name": name, "full_name": full_name, "role": role, "user_site": user_site}
    record = checked(UserRegistered, {**fields, "user": actor})

    def attempt() -> str:
        users = Registry.load(ledger)
        if users is None and role != "data_manager":
            refuse(
                ledger, ["the first registered user must be a data_manager"], action="user add", user=actor
            )
        require(ledger, users, actor, "user add")
        if users is not None and name in users.users:
            raise InvalidInput(f"name: user {name} is already registered")
        namesake = _namesake(users, record.full_name)
        if namesake is not None:
            problem = (
                f"{namesake.name} is already registered as {namesake.full_name}: full names identify signers"
            )
            refuse(ledger, [problem], action="user add", user=actor)
        _in_database(ledger, name, role, user_site)
        return _store(ledger, Registry.append(users, record, ledger.clock()))

    return ledger.write(attempt, action="user add", user=actor)


def update_user(
    ledger: TrialLedger, user: str | None, *, name: str, role: str | None, user_site: str | None, reason: str
) -> UserUpdated:
    """``user update``: change ``name``'s role and/or site (issue 12, item 2); returns the stored record.

    An omitted role stays; an omitted site stays unless the new role acts for the
    whole trial.  Data managers only; the last active data manager keeps the role.
    """
    actor = acting(ledger, user, "user update")
    _check_site(ledger, user_site)

    def attempt() -> UserUpdated:
        users = Registry.load(ledger)
        require(ledger, users, actor, "user update")
        member = _current(users, name)
        assert users is not None  # _current found the user in them
        new_role = role or member.role
        site = user_site
        if site is None and new_role in SITE_ROLES:
            site = member.user_site
        fields = {"name": name, "role": new_role, "user_site": site, "reason": reason, "user": actor}
        record = checked(UserUpdated, fields)
        if (record.role, record.user_site) == (member.role, member.user_site):
            raise InvalidInput(f"role: {name} is already {_described(member)}: nothing to change")
        if member.role == "data_manager" and record.role != "data_manager":
            _keep_a_data_manager(ledger, users, actor, name, "user update")
        _in_database(ledger, name, record.role, record.user_site)
        log = Registry.append(users, record, ledger.clock())
        stored: UserUpdated = log.pending_events[-1].record  # type: ignore[attr-defined]
        _store(ledger, log)
        return stored

    return ledger.write(attempt, action="user update", user=actor)


def deactivate_user(ledger: TrialLedger, user: str | None, *, name: str, reason: str) -> str:
    """``user deactivate``: end ``name``'s access for good (issue 12, item 2); returns the event id.

    Data managers only; the last active data manager cannot be deactivated.
    """
    actor = acting(ledger, user, "user deactivate")
    record = checked(UserDeactivated, {"name": name, "reason": reason, "user": actor})

    def attempt() -> str:
        users = Registry.load(ledger)
        require(ledger, users, actor, "user deactivate")
        member = _current(users, name)
        assert users is not None  # _current found the user in them
        if member.role == "data_manager":
            _keep_a_data_manager(ledger, users, actor, name, "user deactivate")
        _in_database(ledger, name, None, None)
        return _store(ledger, Registry.append(users, record, ledger.clock()))

    return ledger.write(attempt, action="user deactivate", user=actor)


def _current(users: Registry | None, name: str) -> UserRegistered:
    """The active user ``name``; exit 2 naming ``name`` if there is none (an open ledger has none)."""
    if users is None or name not in users.users:
        raise InvalidInput(f"name: user {name} is not registered")
    if name in users.deactivated:
        raise InvalidInput(f"name: user {name} is deactivated (register a new user instead)")
    return users.users[name]


def _keep_a_data_manager(ledger: TrialLedger, users: Registry, actor: str, name: str, action: str) -> None:
    """Refuse to take the role from the last active data manager: nobody could register users again."""
    if [member.name for member in users.active("data_manager")] == [name]:
        refuse(ledger, [f"{name} is the last active data_manager"], action=action, user=actor)


def _described(member: UserRegistered) -> str:
    return member.role + (f" of {member.user_site}" if member.user_site else "")


def _check_site(ledger: TrialLedger, user_site: str | None) -> None:
    if user_site is not None and user_site not in ledger.protocol.sites:
        raise InvalidInput(f"site: unknown site code '{user_site}' ({', '.join(ledger.protocol.sites)})")


def _namesake(users: Registry | None, full_name: str) -> UserRegistered | None:
    """The active user with the same full name (case and spacing aside), if any."""
    key = " ".join(full_name.split()).casefold()
    members = users.active() if users is not None else ()
    return next((m for m in members if " ".join(m.full_name.split()).casefold() == key), None)


def lock(ledger: TrialLedger, user: str | None, reason: str) -> str:
    """``lock``: stop every append until :func:`unlock`; returns the event id."""
    return _trial_event(ledger, user, "lock", DatabaseLocked, reason)


def unlock(ledger: TrialLedger, user: str | None, reason: str) -> str:
    """``unlock``: end the lock; returns the event id."""
    return _trial_event(ledger, user, "unlock", DatabaseUnlocked, reason)


def _trial_event(
    ledger: TrialLedger, user: str | None, action: str, record_type: type[Record], reason: str
) -> str:
    actor = acting(ledger, user, action)
    record = checked(record_type, {"reason": reason, "user": actor})

    def attempt() -> str:
        require(ledger, Registry.load(ledger), actor, action)
        return _store(ledger, Trial.append(Trial.load(ledger), record, ledger.clock()))

    return ledger.write(attempt, action=action, user=record.user)


def _store(ledger: TrialLedger, log: RecordLog) -> str:
    """Save the stream's new event; its id."""
    event_id = log.pending_events[-1].record.id  # type: ignore[attr-defined]
    ledger.save(log)
    return event_id  # type: ignore[no-any-return]


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockState:
    """Whether the data were locked, and by whom, when and why (exports and endpoints)."""

    locked: bool
    since: dt.datetime | None = None
    by: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "locked": self.locked,
            "since": None if self.since is None else utc_text(self.since),
            "by": self.by,
            "reason": self.reason,
        }

    def describe(self) -> str:
        if not self.locked:
            return "not locked"
        return f"locked since {self.to_json()['since']} by {self.by} ({self.reason})"


def lock_state(entries: Iterable[Entry]) -> LockState:
    """The lock after ``entries`` (pass those known at a moment for the state then).

    Only the trial's own stream locks and unlocks, as the seal enforces it
    (:mod:`ledger.storage.seal`): a lock record found in another stream (one a
    login wrote there with SQL, which ``verify`` names) locks nothing.
    """
    state = LockState(False)
    for entry in entries:
        if entry.participant != Trial.STREAM:
            continue
        if isinstance(entry.record, DatabaseLocked):
            state = LockState(True, entry.recorded_at, entry.record.user, entry.record.reason)
        elif isinstance(entry.record, DatabaseUnlocked):
            state = LockState(False)
    return state


# The permission each record of the ledger's own streams needed when appended.
_LOG_ACTIONS: dict[type[Record], str] = {
    UserRegistered: "user add",
    UserUpdated: "user update",
    UserDeactivated: "user deactivate",
    KeyRegistered: "key new",
    DatabaseLocked: "lock",
    DatabaseUnlocked: "unlock",
    ProtocolAdopted: "protocol adopt",
}
_USER_RECORDS = (UserRegistered, UserUpdated, UserDeactivated, KeyRegistered)


def unauthorized(
    entries: Iterable[Entry], appended_by: Iterable[tuple[int, str]] = ()
) -> Iterator[tuple[Entry, str]]:
    """Each event whose ``user`` held no role allowing it when it was appended (issue 12, item 8).

    Replays ``entries`` in ledger order with the users as the ``USERS`` stream
    stood at each moment, and judges every event by :func:`refusal`, the rule
    its write was checked by: so an event that got in without that check (a
    forged or bypassing write, sealed like any other) is named.  Refusals are
    records of attempts, never judged; before the first user is registered the
    ledger is open, and the first registered user must be a data manager.  A
    row of the ``USERS`` stream that is named is not folded into the users
    (:meth:`Users.admit`), as the application reads them.

    ``appended_by`` gives, in ledger order, the database login that sealed each
    position (PostgreSQL, :meth:`TrialLedger.appended_by`): an event naming a
    ``user`` other than the login that appended it is named first, whatever
    that user may do, for the database, not the claim, says who wrote it.
    """
    users = Users()
    logins = iter(appended_by)
    sealed_by = next(logins, None)
    for entry in entries:
        while sealed_by is not None and sealed_by[0] < entry.position:
            sealed_by = next(logins, None)
        login = sealed_by[1] if sealed_by is not None and sealed_by[0] == entry.position else None
        if entry.participant == Registry.STREAM:
            reason = users.admit(entry.record, login)
        else:
            reason = _sealed_by_another(entry.record, login) or users.judge(entry.record, entry.participant)
        if reason is not None:
            yield entry, reason


def _sealed_by_another(record: Record, login: str | None) -> str | None:
    """Why a row sealed by ``login`` (None: unchecked) may not name ``record.user``, or None."""
    if login is None or login == record.user:
        return None
    if not login:
        return f"no ledger entry seals it, and it names {record.user}"
    return f"appended by the login {login}, but it names {record.user}"


def _replayed_refusal(users: Users | None, record: Record, stream: str) -> str | None:
    """Why ``record``, appended to ``stream``, should have been refused, or None (``users`` None: open)."""
    if isinstance(record, ActionRefused):
        return None
    if users is None and isinstance(record, UserRegistered):
        return None if record.role == "data_manager" else "the first registered user must be a data_manager"
    if isinstance(record, _USER_RECORDS) and not isinstance(record, UserRegistered):
        if users is None or record.name not in users.users:
            return f"{record.name} was not a registered user"
        if isinstance(record, KeyRegistered) and record.user != record.name:
            return f"{record.user} registered a key for {record.name}: only its owner registers a key"
    action, participant = _permission_of(record, stream)
    return refusal(users, record.user, action, participant, record.site)


def _permission_of(record: Record, stream: str) -> tuple[str, str | None]:
    """The action (a key of :data:`PERMISSIONS`) an append to ``stream`` needed, and its participant."""
    if isinstance(record, ClinicalRecord):
        return "write", record.participant
    if isinstance(record, EventCorrected | EventVoided):
        return "write", stream
    if isinstance(record, RecordSigned):
        return f"sign {record.meaning}", record.participant
    if isinstance(record, AdverseEventCoded):
        return "code", stream
    return _LOG_ACTIONS[type(record)], None


def user_logins(ledger: TrialLedger) -> dict[int, str]:
    """By position, the login whose name each row of the ``USERS`` stream must carry (PostgreSQL).

    :meth:`TrialLedger.sealed_logins`: read it after the rows it is for.
    """
    return {position: login for position, _, login in ledger.sealed_logins(Registry.STREAM)}


def users_of(entries: Iterable[Entry], logins: Mapping[int, str] | None = None) -> Users:
    """The users as the ``USERS`` stream's events among ``entries`` leave them (:meth:`Users.admit`).

    ``logins``: :func:`user_logins`, read after ``entries``.
    """
    users = Users()
    for entry in entries:
        if entry.participant == Registry.STREAM:
            users.admit(entry.record, (logins or {}).get(entry.position))
    return users


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 3] + "..."


def _is_valid(value: str | None, annotation: Any) -> bool:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError:
        return False
    return True
