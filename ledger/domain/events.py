"""The edge schema: one record type per event of SPEC section 6 (import format).

Each record is a frozen msgspec Struct in a union tagged on ``type``; unknown
fields are refused (SPEC section 1: no identifier slips in).  One C pass decodes
a JSON line, checks types, enumerations, formats and ranges, and the same
struct is what the ledger stores (MessagePack) inside its domain events.

Rules that tie several fields of one record together live in ``__post_init__``
and name the field they blame, so that every message reads ``at $.field: ...``.
Rules that need the protocol (site codes, vital ranges) or the participant's
history live in :mod:`ledger.domain.rules.ordering`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta

from ledger.domain.rules.sites import site_of

Text = Annotated[str, Meta(min_length=1, max_length=500)]
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


class Record(
    msgspec.Struct,
    tag_field="type",
    forbid_unknown_fields=True,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
):
    """Fields every line may carry (SPEC section 6, import format)."""

    id: EventId | None = None
    user: UserName | None = None
    site: SiteCode | None = None
    entered_at: Instant | None = None

    @property
    def type(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]


class ClinicalRecord(Record, kw_only=True):
    """A record about one participant, dated by its clinical ``effective`` date."""

    participant: ParticipantCode
    effective: dt.date


class ParticipantScreened(ClinicalRecord, tag="ParticipantScreened", kw_only=True):
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

    def __post_init__(self) -> None:
        if site_of(self.participant) != self.site:
            _fail("participant", f"code must start with its site code '{self.site}-'")


class ParticipantEnrolled(ClinicalRecord, tag="ParticipantEnrolled", kw_only=True):
    weight_kg: Annotated[float, Meta(gt=0, le=400)]
    deviation: Text | None = None


class MSCInfused(ClinicalRecord, tag="MSCInfused", kw_only=True):
    course: Annotated[int, Meta(ge=1, le=99)]
    cells_per_kg: Annotated[float, Meta(gt=0, le=1e9)]
    lot: Text | None = None


class CMVLoadMeasured(ClinicalRecord, tag="CMVLoadMeasured", kw_only=True):
    specimen: Specimen
    assay: Text
    lloq_iu_ml: Annotated[float, Meta(gt=0, le=1e6)]
    result: CmvResult
    value_iu_ml: Annotated[float, Meta(gt=0, le=1e12)] | None = None

    def __post_init__(self) -> None:
        if self.result == "quantified" and self.value_iu_ml is None:
            _fail("value_iu_ml", "is required when result is 'quantified'")
        if self.result != "quantified" and self.value_iu_ml is not None:
            _fail("value_iu_ml", "is only allowed when result is 'quantified'")


class CMVDiseaseAssessed(ClinicalRecord, tag="CMVDiseaseAssessed", kw_only=True):
    status: DiseaseStatus
    organ: Text | None = None


class AdverseEventReported(ClinicalRecord, tag="AdverseEventReported", kw_only=True):
    ae_id: AeId
    term: Text
    category: Category
    grade: Grade
    serious: bool
    criteria: list[Criterion]
    causality: Causality
    aware_at: Instant

    def __post_init__(self) -> None:
        check_seriousness(self.grade, self.serious, self.criteria)


class AdverseEventUpdated(ClinicalRecord, tag="AdverseEventUpdated", kw_only=True):
    ae_id: AeId
    grade: Grade | None = None
    serious: bool | None = None
    criteria: list[Criterion] | None = None
    outcome: Outcome | None = None
    resolved_date: dt.date | None = None


class ParticipantWithdrew(ClinicalRecord, tag="ParticipantWithdrew", kw_only=True):
    reason: Text


class ParticipantDied(ClinicalRecord, tag="ParticipantDied", kw_only=True):
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


class EventCorrected(Record, tag="EventCorrected", kw_only=True):
    target: EventId
    changes: dict[str, Any]
    reason: Text

    def __post_init__(self) -> None:
        if not self.changes:
            _fail("changes", "must change at least one field")
        for name, value in self.changes.items():
            if name in ("type", "id", "participant"):
                _fail(f"changes.{name}", "cannot be corrected")
            _check_changed_value(name, value)


class EventVoided(Record, tag="EventVoided", kw_only=True):
    target: EventId
    reason: Text


Line = Union[  # noqa: UP007 - a runtime union msgspec tags
    ParticipantScreened,
    ParticipantEnrolled,
    MSCInfused,
    CMVLoadMeasured,
    CMVDiseaseAssessed,
    AdverseEventReported,
    AdverseEventUpdated,
    ParticipantWithdrew,
    ParticipantDied,
    EventCorrected,
    EventVoided,
]


class EnrollmentRefused(ClinicalRecord, tag="EnrollmentRefused", kw_only=True):
    """The record of a refused enrollment: the screen failure (SPEC section 2).

    The ledger writes it itself when ``enroll`` fails eligibility; it is not an
    import type.
    """

    weight_kg: Annotated[float, Meta(gt=0, le=400)]
    criteria: list[Text]


Role = Literal["site_staff", "investigator", "monitor", "data_manager", "auditor"]
SITE_ROLES: tuple[str, ...] = ("site_staff", "investigator")
Meaning = Literal["reviewed", "approved", "investigator_attestation"]
MEANINGS: tuple[str, ...] = Meaning.__args__  # type: ignore[attr-defined]
# 32 bytes as lowercase hex: a SHA-256 leaf hash or an Ed25519 public key.
Hex32 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class UserRegistered(Record, tag="UserRegistered", kw_only=True):
    """A user of the ledger: role, site and Ed25519 public key (issue #6, roles and signatures).

    ``user`` is who registered them; ``user_site`` the site of a ``site_staff`` or
    ``investigator`` (and only theirs); ``public_key`` the raw 32-byte key, hex.
    The ledger writes it for ``user add``; it is not an import type.
    """

    name: UserName
    full_name: Text
    role: Role
    user_site: SiteCode | None = None
    public_key: Hex32

    def __post_init__(self) -> None:
        if self.role in SITE_ROLES and self.user_site is None:
            _fail("user_site", f"a {self.role} belongs to one site: give it")
        if self.role not in SITE_ROLES and self.user_site is not None:
            _fail("user_site", f"a {self.role} acts for the whole trial, not for one site")


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

    participant: ParticipantCode
    meaning: Meaning
    signed_at: Instant
    covers: list[tuple[EventId, Hex32]]
    signature: Annotated[str, Meta(pattern=r"^[0-9a-f]{128}$")]


# Everything a stream may hold: the import types and the ledger's own records (a
# participant's refused enrollments and signatures, the users, the lock, refusals).
Stored = Union[  # noqa: UP007
    Line, EnrollmentRefused, RecordSigned, UserRegistered, DatabaseLocked, DatabaseUnlocked, ActionRefused
]

RECORD_TYPES: dict[str, type[Record]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in Line.__args__  # type: ignore[attr-defined]
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


def apply_changes(record: Record, changes: dict[str, Any]) -> Record:
    """The record as a correction leaves it: ``changes`` over its fields, re-validated.

    SPEC section 6: a corrected event must still be valid; raises
    :class:`InvalidRecord` naming the field otherwise.
    """
    fields = to_fields(record)
    fields.update(changes)
    return convert(fields, type(record))


CHOICES = _choices()
