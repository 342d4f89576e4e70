"""The edge schema: one record type per event of SPEC section 6 (import format).

Each record is a frozen msgspec Struct in a union tagged on ``type``; unknown
fields are refused (SPEC section 1: no identifier slips in).  One C pass decodes
a JSON line, checks types, enumerations, formats and ranges, and the same
struct is what the ledger stores (MessagePack) inside its domain events.

Rules that tie several fields of one record together live in ``check``
(:class:`CrossChecked`) and name the field they blame, so that every message
reads ``at $.field: ...``.  Stored records are read back by the same classes,
leniently when a constraint tightened since refuses them (:func:`from_twin`).
Rules that need the protocol (site codes, vital ranges) or the participant's
history live in :mod:`ledger.domain.rules.ordering`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta

from ledger.domain.rules.sites import site_of

# SPEC section 6: free text holds no control characters but tab and newline
# (C0, DEL and C1 are refused); every other text field is a code or an id whose
# pattern admits none at all.
FREE_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
Text = Annotated[str, Meta(min_length=1, max_length=500, pattern=FREE_TEXT)]
ParticipantCode = Annotated[
    str,
    Meta(pattern=r"^[A-Z][A-Z0-9]{0,9}-[0-9]{3,9}$", description="<SITE>-<NNN>"),
]
SiteCode = Annotated[str, Meta(pattern=r"^[A-Z][A-Z0-9]{0,9}$")]
UserName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
# An event id: the client's ``id`` or the ledger's own (``NFH-001#3``; ``#`` is
# reserved for the ledger, see :func:`ledger.application.trial_ledger.check_client_id`).
EventId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,99}$")]
AeId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
Instant = Annotated[dt.datetime, Meta(tz=True)]
Grade = Annotated[int, Meta(ge=1, le=5)]

Sex = Literal["M", "F", "U"]
RefractoryCmv = Literal["infection", "disease"]
ConsentBy = Literal["participant", "representative"]
Specimen = Literal["plasma", "whole_blood"]
CmvResult = Literal["not_detected", "below_lloq", "quantified", "above_uloq"]
DiseaseStatus = Literal["active", "resolved"]
Category = Literal[
    "gvhd_acute",
    "gvhd_chronic",
    "underlying_disease_relapse",
    "cardiac_toxicity",
    "hepatic_toxicity",
    "renal_toxicity",
    "secondary_malignancy",
    "infusion_reaction",
    "infection",
    "other",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]
Criterion = Literal[
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "important_medical_event",
]
Causality = Literal["certain", "probable", "possible", "unlikely", "conditional", "unassessable"]
Outcome = Literal["recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal"]


class InvalidRecord(ValueError):
    """A record breaks a rule of the schema; ``field`` names the culprit."""


def _fail(field: str, problem: str) -> None:
    raise ValueError(f"{problem} - at `$.{field}`")


def check_seriousness(grade: int | None, serious: bool | None, criteria: list[str] | None) -> None:
    """SPEC section 2: serious needs a criterion, grade 5 needs death and serious."""
    if serious and not criteria:
        _fail("criteria", "a serious adverse event needs at least one seriousness criterion")
    if serious is False and criteria:
        _fail("criteria", "must be empty when the adverse event is not serious")
    if criteria is not None and len(set(criteria)) != len(criteria):
        _fail("criteria", "lists a criterion twice")
    if grade == 5 and not (serious and criteria and "death" in criteria):
        _fail("grade", "grade 5 requires serious = true with the criterion 'death'")


# Off only while a stored event is read leniently (:func:`lenient`): what was
# accepted once is never refused again by a rule tightened since.
_EDGE_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("edge_checks", default=True)


class CrossChecked:
    """A record whose fields are tied together by :meth:`check`, run wherever it is built at the edge."""

    __slots__ = ()

    def __post_init__(self) -> None:
        if _EDGE_CHECKS.get():
            self.check()

    def check(self) -> None:
        """Raise ``ValueError`` naming the field (``problem - at `$.field```) when the fields disagree."""


class Record(
    msgspec.Struct,
    tag_field="type",
    forbid_unknown_fields=True,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
):
    """Fields every line may carry (SPEC section 6, import format).

    Each concrete record type declares, next to its fields (issue 13, one place
    per type): ``command``, the write command that appends it (import types
    only); ``same_day_order``, its place among a participant's records of one
    clinical date in a batch; ``event``, the name of the participant
    aggregate's event class that carries it (the name is in stored topics and
    sealed: never rename one).  Records of the ledger's own streams (users,
    lock, refusals) have no ``event``.
    """

    command: ClassVar[str | None] = None
    same_day_order: ClassVar[int | None] = None
    event: ClassVar[str | None] = None

    id: EventId | None = None
    user: UserName | None = None
    site: SiteCode | None = None
    entered_at: Instant | None = None
    # Issue 12, item 5: the source system's own attribution of an imported line (its
    # ``user`` field), kept as provenance; ``user`` is the login that entered it.
    source_user: UserName | None = None

    @property
    def type(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


class ClinicalRecord(Record, kw_only=True):
    """A record about one participant, dated by its clinical ``effective`` date."""

    participant: ParticipantCode
    effective: dt.date


class ParticipantScreened(ClinicalRecord, CrossChecked, tag="ParticipantScreened", kw_only=True):
    command = "screen"
    same_day_order = 0
    event = "Screened"
    site: SiteCode
    age_years: Annotated[int, Meta(ge=0, le=130)]
    sex: Sex
    refractory_cmv: RefractoryCmv | None
    consent_date: dt.date
    consent_by: ConsentBy
    hr: Annotated[int, Meta(ge=1, le=350)]
    rr: Annotated[int, Meta(ge=1, le=120)]
    sbp: Annotated[int, Meta(ge=1, le=350)]
    dbp: Annotated[int, Meta(ge=1, le=250)]
    investigator_excluded: bool = False

    def check(self) -> None:
        if site_of(self.participant) != self.site:
            _fail("participant", f"code must start with its site code '{self.site}-'")


class ParticipantEnrolled(ClinicalRecord, tag="ParticipantEnrolled", kw_only=True):
    command = "enroll"
    same_day_order = 1
    event = "Enrolled"
    weight_kg: Annotated[float, Meta(gt=0, le=400)]
    deviation: Text | None = None


class MSCInfused(ClinicalRecord, tag="MSCInfused", kw_only=True):
    command = "infuse"
    same_day_order = 2
    event = "Infused"
    course: Annotated[int, Meta(ge=1, le=99)]
    cells_per_kg: Annotated[float, Meta(gt=0, le=1e9)]
    lot: Text | None = None


class CMVLoadMeasured(ClinicalRecord, CrossChecked, tag="CMVLoadMeasured", kw_only=True):
    command = "cmv"
    same_day_order = 3
    event = "CMVLoadMeasured"
    specimen: Specimen
    assay: Text
    lloq_iu_ml: Annotated[float, Meta(gt=0, le=1e6)]
    result: CmvResult
    value_iu_ml: Annotated[float, Meta(gt=0, le=1e12)] | None = None

    def check(self) -> None:
        if self.result == "quantified" and self.value_iu_ml is None:
            _fail("value_iu_ml", "is required when result is 'quantified'")
        if self.result != "quantified" and self.value_iu_ml is not None:
            _fail("value_iu_ml", "is only allowed when result is 'quantified'")


class CMVDiseaseAssessed(ClinicalRecord, tag="CMVDiseaseAssessed", kw_only=True):
    command = "disease"
    same_day_order = 3
    event = "CMVDiseaseAssessed"
    status: DiseaseStatus
    organ: Text | None = None


class AdverseEventReported(ClinicalRecord, CrossChecked, tag="AdverseEventReported", kw_only=True):
    command = "ae"
    same_day_order = 4
    event = "AdverseEventReported"
    ae_id: AeId
    term: Text
    category: Category
    grade: Grade
    serious: bool
    criteria: list[Criterion]
    causality: Causality
    aware_at: Instant

    def check(self) -> None:
        check_seriousness(self.grade, self.serious, self.criteria)


class AdverseEventUpdated(ClinicalRecord, tag="AdverseEventUpdated", kw_only=True):
    command = "ae-update"
    same_day_order = 5
    event = "AdverseEventUpdated"
    ae_id: AeId
    grade: Grade | None = None
    serious: bool | None = None
    criteria: list[Criterion] | None = None
    outcome: Outcome | None = None
    resolved_date: dt.date | None = None


class ParticipantWithdrew(ClinicalRecord, tag="ParticipantWithdrew", kw_only=True):
    command = "withdraw"
    same_day_order = 6
    event = "Withdrew"
    reason: Text


class ParticipantDied(ClinicalRecord, tag="ParticipantDied", kw_only=True):
    command = "death"
    same_day_order = 7
    event = "Died"
    cause: Text | None = None


_SAFE_INTEGER = 2**53


def _check_changed_value(name: str, value: Any) -> None:
    """A corrected field's new value is what record fields hold: nothing nested, no huge numbers."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict | list):
            _fail(f"changes.{name}", "a new value cannot be a nested object or list")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > _SAFE_INTEGER:
            _fail(f"changes.{name}", f"number out of range (at most {_SAFE_INTEGER} in size)")


# SPEC section 6: what identifies an event and who, where and when entered it.
PROVENANCE: tuple[str, ...] = ("type", "id", "participant", "site", "user", "entered_at", "source_user")


class EventCorrected(Record, CrossChecked, tag="EventCorrected", kw_only=True):
    command = "correct"
    event = "Corrected"
    target: EventId
    changes: dict[str, Any]
    reason: Text

    def check(self) -> None:
        if not self.changes:
            _fail("changes", "must change at least one field")
        for name, value in self.changes.items():
            if name in PROVENANCE:
                _fail(f"changes.{name}", "cannot be corrected")
            _check_changed_value(name, value)


class EventVoided(Record, tag="EventVoided", kw_only=True):
    command = "void"
    event = "Voided"
    target: EventId
    reason: Text


class EnrollmentRefused(ClinicalRecord, tag="EnrollmentRefused", kw_only=True):
    """The record of a refused enrollment: the screen failure (SPEC section 2).

    The ledger writes it itself when ``enroll`` fails eligibility; it is not an
    import type.
    """

    event = "EnrollmentRefused"
    weight_kg: Annotated[float, Meta(gt=0, le=400)]
    criteria: list[Text]


Role = Literal["site_staff", "investigator", "monitor", "data_manager", "auditor", "coder"]
SITE_ROLES: tuple[str, ...] = ("site_staff", "investigator")
Meaning = Literal["reviewed", "approved", "investigator_attestation"]
MEANINGS: tuple[str, ...] = Meaning.__args__  # type: ignore[attr-defined]
# 32 bytes as lowercase hex: a SHA-256 leaf hash or an Ed25519 public key.
Hex32 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class UserRegistered(Record, CrossChecked, tag="UserRegistered", kw_only=True):
    """A user of the ledger: role and site (issue #6, roles and signatures).

    ``user`` is who registered them; ``user_site`` the site of a ``site_staff`` or
    ``investigator`` (and only theirs).  ``public_key`` (the raw 32-byte Ed25519
    key, hex) was given by ``user add`` before issue 12; since, a user registers
    their own key (:class:`KeyRegistered`) and ``user add`` gives none.
    The ledger writes it for ``user add``; it is not an import type.
    """

    name: UserName
    full_name: Text
    role: Role
    user_site: SiteCode | None = None
    public_key: Hex32 | None = None

    def check(self) -> None:
        _check_user_site(self.role, self.user_site)


def _check_user_site(role: str, user_site: str | None) -> None:
    """A site role belongs to one site; every other role to the whole trial."""
    if role in SITE_ROLES and user_site is None:
        _fail("user_site", f"a {role} belongs to one site: give it")
    if role not in SITE_ROLES and user_site is not None:
        _fail("user_site", f"a {role} acts for the whole trial, not for one site")


class UserUpdated(Record, CrossChecked, tag="UserUpdated", kw_only=True):
    """A change of a registered user's role or site (issue 12, item 2: role changes are events).

    ``role`` and ``user_site`` are the user's state after the change, complete,
    so that the registry is their latest values; ``user`` is who changed them.
    The ledger writes it for ``user update``; it is not an import type.
    """

    name: UserName
    role: Role
    user_site: SiteCode | None = None
    reason: Text

    def check(self) -> None:
        _check_user_site(self.role, self.user_site)


class UserDeactivated(Record, tag="UserDeactivated", kw_only=True):
    """The end of a user's access: from then on they can do nothing (issue 12, item 2).

    ``user`` is who deactivated them.  The ledger writes it for ``user deactivate``;
    it is not an import type.
    """

    name: UserName
    reason: Text


class KeyRegistered(Record, tag="KeyRegistered", kw_only=True):
    """A user's own signing key (issue 12, item 6: key custody), in the ``USERS`` stream.

    ``name`` is the user whose key it is and ``user`` who registered it: the
    same login, for nobody else makes or registers a person's key.  The key
    pair is made on the user's side (``key new``); the ledger keeps only the
    public key, the raw 32-byte Ed25519 key, hex.  A later one replaces it for
    signatures made after it.  The ledger writes it; it is not an import type.
    """

    name: UserName
    public_key: Hex32


class DatabaseLocked(Record, tag="DatabaseLocked", kw_only=True):
    """The database lock: no append until :class:`DatabaseUnlocked` (issue #6, database lock)."""

    reason: Text


class DatabaseUnlocked(Record, tag="DatabaseUnlocked", kw_only=True):
    """The end of a database lock (issue #6, database lock)."""

    reason: Text


class ActionRefused(Record, tag="ActionRefused", kw_only=True):
    """A refused attempt (SPEC section 6, exit 3: not permitted), kept for the audit trail.

    ``user`` is who tried, ``action`` what they tried, ``participant`` whom it
    concerned, if one participant.
    """

    action: Text
    reason: Text
    participant: ParticipantCode | None = None


class RecordSigned(Record, tag="RecordSigned", kw_only=True):
    """An electronic signature of a participant's record (21 CFR 11.50, 11.70, 11.200).

    ``user`` is the signer; ``covers`` the ``(event id, leaf hash)`` of every
    event of the participant's stream at signing (signatures excepted);
    ``signature`` the signer's Ed25519 signature (hex) of
    :func:`ledger.application.signatures.message`.  Stored in the participant's stream.
    """

    event = "Signed"
    participant: ParticipantCode
    meaning: Meaning
    signed_at: Instant
    covers: list[tuple[EventId, Hex32]]
    signature: Annotated[str, Meta(pattern=r"^[0-9a-f]{128}$")]


DictionaryCode = Annotated[int, Meta(ge=1, le=99_999_999)]
MEDDRA_LEVELS = ("llt", "pt", "hlt", "hlgt", "soc")  # lowest level term up to system organ class


class AdverseEventCoded(Record, tag="AdverseEventCoded", kw_only=True):
    """A coder's coding of an adverse event's verbatim term in a medical dictionary (issue 15).

    ``dictionary`` names the dictionary and its version (``MedDRA 27.0``); the
    coder's choice is the lowest level term, the preferred term and the primary
    path above it (high level term, high level group term, system organ
    class), each with its code.  ``verbatim`` is the term as it read when coded
    (set by the ledger).  Recoding is a new event: the latest coding counts.
    The ledger ships no dictionary; it records what the coder chose.  Stored in
    the participant's stream; not an import line (``code-ae`` is its own use case).
    """

    event = "AdverseEventCoded"
    participant: ParticipantCode
    ae_id: AeId
    verbatim: Text
    dictionary: Text
    llt_code: DictionaryCode
    llt: Text
    pt_code: DictionaryCode
    pt: Text
    hlt_code: DictionaryCode
    hlt: Text
    hlgt_code: DictionaryCode
    hlgt: Text
    soc_code: DictionaryCode
    soc: Text


# The coder's choice in an AdverseEventCoded, level by level: what recoding can change.
CODING_FIELDS: tuple[str, ...] = (
    "dictionary",
    *(f"{level}{part}" for level in MEDDRA_LEVELS for part in ("_code", "")),
)


class ProtocolAdopted(Record, tag="ProtocolAdopted", kw_only=True):
    """A protocol version adopted by the trial (SPEC section 2: protocol versions as events).

    ``content`` is the protocol file as adopted and ``sha256`` its hash, so the
    version judges its participants from the ledger alone, whatever file is on
    disk later; ``effective`` is the first date it is in force; ``user`` who
    adopted it.  The ledger writes it for ``init`` and ``protocol adopt``; it is
    not an import type.
    """

    study: Text
    version: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._ ()-]{0,39}$")]
    effective: dt.date
    sha256: Hex32
    # The file's text as it is (line ends CR LF included), without other control characters.
    content: Annotated[
        str, Meta(min_length=1, max_length=65_536, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")
    ]
    reason: Text


def _concrete(base: type[Record]) -> Iterator[type[Record]]:
    """The record types below ``base`` that have no subtypes, in the order they are declared."""
    for sub in base.__subclasses__():
        if sub.__subclasses__():
            yield from _concrete(sub)
        else:
            yield sub


# Everything a stream may hold: the import types and the ledger's own records (a
# participant's refused enrollments, signatures and codings, the users, the lock, refusals).
STORED_TYPES: tuple[type[Record], ...] = tuple(_concrete(Record))
IMPORT_TYPES: tuple[type[Record], ...] = tuple(t for t in STORED_TYPES if t.command is not None)
Line = Union[IMPORT_TYPES]  # type: ignore[valid-type]  # noqa: UP007 - a runtime union msgspec tags
Stored = Union[STORED_TYPES]  # type: ignore[valid-type]  # noqa: UP007

RECORD_TYPES: dict[str, type[Record]] = {t.__struct_config__.tag: t for t in IMPORT_TYPES}  # type: ignore[misc]
# The write command of every import type (SPEC section 6: one command per type).
WRITE_COMMANDS: dict[str, str] = {t.command: tag for tag, t in RECORD_TYPES.items() if t.command}
# Records of one participant in one batch are applied by clinical date, then in
# this order on the same date, then in the order given (SPEC section 6: an
# import may list lines in any order).
SAME_DAY_ORDER: dict[str, int] = {
    tag: t.same_day_order for tag, t in RECORD_TYPES.items() if t.same_day_order is not None
}

_json_decoder = msgspec.json.Decoder(Line)


def decode_line(line: bytes | str) -> Line:
    """Decode and validate one JSON line; raises :class:`InvalidRecord`."""
    try:
        return _json_decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise InvalidRecord(_readable(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidRecord(f"not a JSON object: {exc}") from None
    except RecursionError:
        # Only ``changes`` holds values of any shape; typed fields fail at once.
        raise InvalidRecord("changes: nested too deeply (a new value is a plain value or a list)") from None


def convert(fields: dict[str, Any], record_type: type[Record]) -> Record:
    """Build a record of ``record_type`` from Python values, with the same checks.

    Used for records built from command-line options and for corrected records,
    which must still be valid (SPEC section 6).
    """
    try:
        return msgspec.convert(fields, record_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRecord(_readable(str(exc))) from None


R = TypeVar("R", bound=Record)


@functools.cache
def _field_type(record_type: type[Record], name: str) -> Any:
    return get_type_hints(record_type, include_extras=True)[name]


def fill(record: R, **values: Any) -> R:
    """``record`` with ``values`` set, each checked first against its field's type in the import schema.

    Issue 11: the ledger fills ``id``, ``user`` and ``site`` into records it
    stores; a value the import would refuse is refused here too (raises
    :class:`InvalidRecord` naming the field), so that nothing is stored that
    the schema cannot read back.
    """
    for name, value in values.items():
        try:
            msgspec.convert(value, _field_type(type(record), name))
        except msgspec.ValidationError as exc:
            raise InvalidRecord(_readable(f"{exc} - at `$.{name}`")) from None
    return msgspec.structs.replace(record, **values)


def utc_text(moment: dt.datetime) -> str:
    """An instant as ISO 8601 in UTC with ``Z`` (SPEC section 6: date-times are stored in UTC)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_fields(record: Record) -> dict[str, Any]:
    """The record as JSON-compatible builtins, ``type`` first."""
    return msgspec.to_builtins(record)  # type: ignore[no-any-return]


def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every enumerated field, for error messages."""
    found: dict[str, tuple[str, ...]] = {}
    for record_type in RECORD_TYPES.values():
        hints = get_type_hints(record_type)
        for name in record_type.__struct_fields__:
            for part in (hints[name], *get_args(hints[name])):
                for inner in (part, *get_args(part)):
                    if get_origin(inner) is Literal:
                        found[name] = get_args(inner)
    return found


def _readable(message: str) -> str:
    """msgspec says ``Expected `int`, got `str` - at `$.grade```: name the field first."""
    if " - at `$." in message:
        problem, _, where = message.rpartition(" - at `$.")
        field = where.rstrip("`")
        base = field.split("[")[0].split(".")[0]
        if repr(FREE_TEXT) in problem:
            problem = "Control characters are not allowed (free text may hold tab and newline)"
        if problem.startswith("Invalid enum value") and base in CHOICES:
            problem += f" (expected one of {', '.join(CHOICES[base])})"
        return f"{field}: {problem[0].lower() + problem[1:]}"
    if message.startswith("Object missing required field"):
        field = message.split("`")[1]
        return f"{field}: required field is missing"
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        return f"{field}: unknown field (not in the schema of this event type)"
    if ("Invalid value" in message and "type" in message) or "tag" in message.lower():
        return f"type: {message[0].lower() + message[1:]}"
    return message


def checked_changes(record: Record, changes: dict[str, Any]) -> Record:
    """The record as a new correction would leave it: ``changes`` over its fields, re-validated.

    SPEC section 6: a corrected event must still be valid; raises
    :class:`InvalidRecord` naming ``changes.<field>``, or ``target.<field>``
    when the value at fault is one the event was stored with by a version
    whose schema accepted it (docs/decisions.md: such an event is voided and
    entered again).
    """
    try:
        return convert({**to_fields(record), **changes}, type(record))
    except InvalidRecord as exc:
        try:
            convert(to_fields(record), type(record))
        except InvalidRecord:
            raise InvalidRecord(f"target.{exc}") from None
        raise InvalidRecord(f"changes.{exc}") from None


def apply_changes(record: Record, changes: dict[str, Any]) -> Record:
    """The record as a correction leaves it: ``changes`` over its fields, re-validated.

    SPEC section 6: a corrected event must still be valid; raises
    :class:`InvalidRecord` naming the field otherwise.
    """
    return convert({**to_fields(record), **changes}, type(record))


def stored_changes(record: Record, changes: dict[str, Any]) -> Record:
    """The record as a stored correction left it (the read side of SPEC section 6).

    The correction passed :func:`checked_changes` when it was stored; a
    constraint tightened since never undoes it: the record is then built
    leniently, as stored events are (:func:`from_twin`).  Raises
    :class:`InvalidRecord` only for values of the wrong type.
    """
    fields = {**to_fields(record), **changes}
    try:
        return convert(fields, type(record))
    except InvalidRecord:
        try:
            twin = msgspec.convert(fields, _twin_of(type(record)), strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidRecord(_readable(str(exc))) from None
        return from_twin(twin)


CHOICES = _choices()


# -- reading what was stored (issue 11: what was accepted stays readable) -----------------------


@contextmanager
def lenient() -> Iterator[None]:
    """Records built inside skip the cross-field checks (:class:`CrossChecked`)."""
    token = _EDGE_CHECKS.set(False)
    try:
        yield
    finally:
        _EDGE_CHECKS.reset(token)


def _relaxed(hint: Any) -> Any:
    """``hint`` without the edge's constraints: no lengths, patterns or ranges, literals as their type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _relaxed(args[0])
    if origin is Literal:
        return Union[tuple({type(arg) for arg in args})]  # noqa: UP007
    if origin in (Union, types.UnionType):
        return Union[tuple(_relaxed(arg) for arg in args)]  # noqa: UP007
    if origin in (list, tuple, dict):
        return origin[tuple(_relaxed(arg) for arg in args)]
    return hint


def _twin(record_type: type[Record]) -> type[msgspec.Struct]:
    """A Struct with ``record_type``'s tag and fields, and none of its constraints or checks."""
    hints = get_type_hints(record_type, include_extras=True)
    fields = [
        (f.name, _relaxed(hints[f.name]), f.default)
        if f.default is not msgspec.NODEFAULT
        else (f.name, _relaxed(hints[f.name]))
        for f in msgspec.structs.fields(record_type)
    ]
    config = record_type.__struct_config__
    return msgspec.defstruct(
        f"Lenient{record_type.__name__}",
        fields,
        tag_field=config.tag_field,
        tag=config.tag,
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,  # a field is never dropped unseen (docs/decisions.md)
    )


@functools.cache
def _twins() -> dict[type[msgspec.Struct], type[Record]]:
    """Every stored record type's twin, made the first time one is needed (not at every start)."""
    return {_twin(t): t for t in STORED_TYPES}


@functools.cache
def _twin_of(record_type: type[Record]) -> type[msgspec.Struct]:
    return next(twin for twin, kind in _twins().items() if kind is record_type)


def lenient_stored() -> Any:
    """The union of the twins: what a stored record decodes as when today's edge would refuse it."""
    return Union[tuple(_twins())]  # noqa: UP007


def from_twin(twin: msgspec.Struct) -> Record:
    """The record a lenient twin (:func:`lenient_stored`) stands for, built without re-running any check."""
    record_type = _twins()[type(twin)]
    with lenient():
        return record_type(**msgspec.structs.asdict(twin))
