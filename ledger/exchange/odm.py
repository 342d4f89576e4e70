"""CDISC ODM 1.3.2 export of the ledger, and the reader that takes it back (issue #6; SPEC sections 4-6).

The export is a *Transactional* ODM file: every stored event, in ledger order,
as the transaction it is.

- Study metadata: one StudyEventDef, FormDef and ItemGroupDef per clinical
  record type (OIDs ``SE.``/``F.``/``IG.`` + type), one ItemDef per field
  (``I.<type>.<field>``) with its ODM data type, unit and code list (``CL.<field>``)
  for enumerations; lists (AE ``criteria``) are JSON text.
- AdminData: every user named by an event (registered users with full name,
  site and public key as Certificate), every site as a Location (``LOC.<site>``)
  and ``LOC.TRIAL`` for what no site entered (data management), and one
  SignatureDef per signature meaning (``SIG.<meaning>``).
- ClinicalData: a participant's event is a SubjectData (``Insert`` the first
  time, then ``Context``) holding a StudyEventData whose repeat key is the event
  id.  A clinical event is an ``Insert`` ItemGroupData with all its fields; a
  correction an ``Update`` ItemGroupData of its target with the changed fields
  (``IsNull`` for a cleared one) and the reason as ReasonForChange; a void a
  ``Remove`` of the target's StudyEventData.  Each carries an AuditRecord:
  UserRef, LocationRef (the site that entered it), DateTimeStamp (``recorded_at``,
  UTC), ReasonForChange, SourceID (the event id).  A signature is a Signature of
  the SubjectData whose CryptoBindingManifest holds the Ed25519 signature and the
  hashes it covers.  Events of the ``TRIAL`` and ``USERS`` streams (lock,
  unlock, refused attempts, user registrations) are ClinicalData AuditRecords
  whose ReasonForChange is the record as JSON.

``--known-at`` exports the ledger as it stood then.  The ODM root's
``Description`` states whether the data were locked at that moment.

:func:`read_odm` parses such a file back into the ledger's records (what a
receiving system would reconstruct); the entry provenance (``entered_at``, and
``source_user``, an imported line's own attribution, which a clinical event
carries as an item) of corrections, voids and signatures has no place in ODM
and is not carried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
from lxml import etree

from ledger.application.access import lock_state, users_of
from ledger.application.signatures import DOMAIN
from ledger.domain.entry import Entry
from ledger.domain.events import (
    MEANINGS,
    SITE_ROLES,
    ClinicalRecord,
    EventCorrected,
    EventVoided,
    Record,
    RecordSigned,
    Stored,
    stored_changes,
    to_fields,
    utc_text,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.sites import site_of
from ledger.domain.text import xml_text

NS = "http://www.cdisc.org/ns/odm/v1.3"
TRIAL_LOCATION = "TRIAL"
UNIDENTIFIED = "unidentified"
STORED_TYPES: dict[str, type[Record]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in Stored.__args__  # type: ignore[attr-defined]
}
CLINICAL_TYPES = [cls for cls in STORED_TYPES.values() if issubclass(cls, ClinicalRecord)]
# Fields that are not items: the subject key, SourceID, UserRef and LocationRef carry them.
NOT_ITEMS = ("id", "user", "site", "participant")
SCHEDULED = ("ParticipantScreened", "ParticipantEnrolled", "MSCInfused")
UNITS = {
    "age_years": "years",
    "hr": "/min",
    "rr": "/min",
    "sbp": "mmHg",
    "dbp": "mmHg",
    "weight_kg": "kg",
    "cells_per_kg": "cells/kg",
    "lloq_iu_ml": "IU/mL",
    "value_iu_ml": "IU/mL",
}
UNIT_OIDS = {
    "years": "MU.YEARS",
    "/min": "MU.PER_MIN",
    "mmHg": "MU.MMHG",
    "kg": "MU.KG",
    "cells/kg": "MU.CELLS_PER_KG",
    "IU/mL": "MU.IU_PER_ML",
}
USER_TYPES = {"site_staff": "Investigator", "investigator": "Investigator", "data_manager": "Sponsor"}
LEGAL_REASON = "Electronic signature, 21 CFR Part 11 (11.50, 11.70, 11.200): Ed25519 with the signer's key"


ODM_TYPES = {
    mi.DateType: "date",
    mi.DateTimeType: "datetime",
    mi.IntType: "integer",
    mi.FloatType: "float",
    mi.BoolType: "boolean",
}


@dataclass(frozen=True)
class Field:
    """One item of a record type: its ODM data type and the values of its code list (enumerations)."""

    name: str
    required: bool
    data_type: str
    codes: tuple[str, ...] = ()
    is_list: bool = False


def item_fields(record_type: type[Record]) -> list[Field]:
    """The items of a clinical record type, in schema order."""
    return [
        _field(f.name, f.required, mi.type_info(f.type))
        for f in msgspec.structs.fields(record_type)
        if f.name not in NOT_ITEMS
    ]


def _field(name: str, required: bool, info: Any) -> Field:
    while isinstance(info, mi.Metadata | mi.UnionType):
        info = (
            info.type
            if isinstance(info, mi.Metadata)
            else next(t for t in info.types if not isinstance(t, mi.NoneType))
        )
    if isinstance(info, mi.ListType):
        inner = _field(name, required, info.item_type)
        return Field(name, required, "text", inner.codes, is_list=True)
    if isinstance(info, mi.LiteralType):
        return Field(name, required, "text", tuple(map(str, info.values)))
    return Field(name, required, ODM_TYPES.get(type(info), "text"))


def odm_value(value: Any) -> str:
    """A field value as ODM text: ISO dates, UTC date-times, decimals without exponent, JSON lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return msgspec.json.encode(value).decode()
    return str(value)


def _el(parent: Any, tag: str, text: str | None = None, **attrs: str | None) -> Any:
    """An element; characters XML 1.0 cannot hold (stored by an older version) escaped (issue 11)."""
    element = etree.SubElement(
        parent, f"{{{NS}}}{tag}", {k: xml_text(v) for k, v in attrs.items() if v is not None}
    )
    if text is not None:
        element.text = xml_text(text)
    return element


def _text(parent: Any, tag: str, text: str) -> Any:
    """An element holding one TranslatedText (Decode, Symbol, Description)."""
    element = _el(parent, tag)
    _el(element, "TranslatedText", text)
    return element


# -- export ---------------------------------------------------------------------------------------


def export_odm(
    entries: Iterable[Entry],
    protocol: Protocol,
    path: str | Path,
    *,
    known_at: dt.datetime | None,
    created: dt.datetime,
    logins: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Write the ODM file of ``entries`` (the ledger as known at ``known_at``); a summary.

    ``logins``: who sealed the users' rows (:func:`ledger.application.access.users_of`).
    """
    chosen = list(entries)
    document = build(chosen, protocol, known_at=known_at, created=created, logins=logins)
    etree.ElementTree(document).write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return {
        "file": str(path),
        "events": len(chosen),
        "subjects": len({e.participant for e in chosen if isinstance(e.record, ClinicalRecord)}),
        "known_at": utc_text(known_at or created),
        "lock": lock_state(chosen).to_json(),
    }


def build(
    entries: list[Entry],
    protocol: Protocol,
    *,
    known_at: dt.datetime | None,
    created: dt.datetime,
    logins: Mapping[int, str] | None = None,
) -> Any:
    """The ODM document (an lxml element) of ``entries``, in ledger order."""
    study = protocol.study
    mdv = f"MDV.{study}.1"
    lock = lock_state(entries)
    root = etree.Element(
        f"{{{NS}}}ODM",
        nsmap={None: NS},
        FileType="Transactional",
        Granularity="All",
        FileOID=f"{study}.ledger.{len(entries)}.{created.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}",
        CreationDateTime=utc_text(created),
        AsOfDateTime=utc_text(known_at or created),
        ODMVersion="1.3.2",
        Originator="trial-ledger",
        SourceSystem="trial-ledger",
        SourceSystemVersion=version("trial-ledger"),
        Description=f"{study} ({protocol.registry_id}) ledger, {len(entries)} events as recorded by "
        f"{utc_text(known_at or created)}; data {lock.describe()}",
    )
    _study(root, protocol, mdv, attributed=any(e.record.source_user for e in entries))
    first_day = entries[0].recorded_at.date() if entries else created.date()
    _admin(root, protocol, entries, mdv, first_day, logins)
    _clinical(root, study, mdv, entries)
    return root


def _study(root: Any, protocol: Protocol, mdv: str, *, attributed: bool) -> None:
    """The metadata; the item of a source system's attribution only when an event carries one (issue 12)."""

    def items(cls: type[Record]) -> list[Field]:
        return [f for f in item_fields(cls) if attributed or f.name != "source_user"]

    study = _el(root, "Study", OID=protocol.study)
    variables = _el(study, "GlobalVariables")
    _el(variables, "StudyName", protocol.study)
    _el(variables, "StudyDescription", protocol.title)
    _el(variables, "ProtocolName", f"{protocol.study} ({protocol.registry_id})")
    units = _el(study, "BasicDefinitions")
    for symbol, oid in UNIT_OIDS.items():
        _text(_el(units, "MeasurementUnit", OID=oid, Name=symbol), "Symbol", symbol)
    meta = _el(study, "MetaDataVersion", OID=mdv, Name=f"{protocol.study} ledger schema")
    plan = _el(meta, "Protocol")
    for number, cls in enumerate(CLINICAL_TYPES, start=1):
        mandatory = "Yes" if number == 1 else "No"
        _el(
            plan,
            "StudyEventRef",
            StudyEventOID=f"SE.{_tag(cls)}",
            OrderNumber=str(number),
            Mandatory=mandatory,
        )
    for cls in CLINICAL_TYPES:
        kind = "Scheduled" if _tag(cls) in SCHEDULED else "Unscheduled"
        event = _el(meta, "StudyEventDef", OID=f"SE.{_tag(cls)}", Name=_tag(cls), Repeating="Yes", Type=kind)
        _el(event, "FormRef", FormOID=f"F.{_tag(cls)}", Mandatory="Yes")
    for cls in CLINICAL_TYPES:
        form = _el(meta, "FormDef", OID=f"F.{_tag(cls)}", Name=_tag(cls), Repeating="No")
        _el(form, "ItemGroupRef", ItemGroupOID=f"IG.{_tag(cls)}", Mandatory="Yes")
    for cls in CLINICAL_TYPES:
        group = _el(meta, "ItemGroupDef", OID=f"IG.{_tag(cls)}", Name=_tag(cls), Repeating="No")
        for number, f in enumerate(items(cls), start=1):
            mandatory = "Yes" if f.required else "No"
            _el(group, "ItemRef", ItemOID=_item(cls, f.name), OrderNumber=str(number), Mandatory=mandatory)
    code_lists: dict[str, tuple[str, ...]] = {}
    for cls in CLINICAL_TYPES:
        for f in items(cls):
            item = _el(meta, "ItemDef", OID=_item(cls, f.name), Name=f.name, DataType=f.data_type)
            if f.is_list:
                _text(item, "Description", "JSON list" + (f" of values of CL.{f.name}" if f.codes else ""))
            if f.name in UNITS:
                _el(item, "MeasurementUnitRef", MeasurementUnitOID=UNIT_OIDS[UNITS[f.name]])
            if f.codes and not f.is_list:
                _el(item, "CodeListRef", CodeListOID=f"CL.{f.name}")
            if f.codes:
                code_lists[f.name] = f.codes
    for name, codes in code_lists.items():
        code_list = _el(meta, "CodeList", OID=f"CL.{name}", Name=name, DataType="text")
        for code in codes:
            _text(_el(code_list, "CodeListItem", CodedValue=code), "Decode", code.replace("_", " "))


def _admin(
    root: Any,
    protocol: Protocol,
    entries: list[Entry],
    mdv: str,
    first_day: dt.date,
    logins: Mapping[int, str] | None,
) -> None:
    admin = _el(root, "AdminData", StudyOID=protocol.study)
    users = users_of(entries, logins)
    registered, keys = users.users, users.keys
    for name in sorted({_user(e.record) for e in entries} | set(registered)):
        member = registered.get(name)
        user = _el(
            admin,
            "User",
            OID=f"USR.{name}",
            UserType=USER_TYPES.get(member.role, "Other") if member else None,
        )
        _el(user, "LoginName", name)
        if member is not None:
            _el(user, "FullName", member.full_name)
            _el(user, "Organization", member.role)
            if member.role in SITE_ROLES:
                _el(user, "LocationRef", LocationOID=f"LOC.{member.user_site}")
            if name in keys:
                _el(user, "Certificate", f"ed25519:{keys[name]}")
    locations = [(code, name, "Site") for code, name in protocol.sites.items()]
    for code, name, kind in [*locations, (TRIAL_LOCATION, f"{protocol.study} data management", "Sponsor")]:
        location = _el(admin, "Location", OID=f"LOC.{code}", Name=name, LocationType=kind)
        _el(
            location,
            "MetaDataVersionRef",
            StudyOID=protocol.study,
            MetaDataVersionOID=mdv,
            EffectiveDate=first_day.isoformat(),
        )
    for meaning in MEANINGS:
        definition = _el(admin, "SignatureDef", OID=f"SIG.{meaning}", Methodology="Digital")
        _el(definition, "Meaning", meaning.replace("_", " "))
        _el(definition, "LegalReason", LEGAL_REASON)


def _clinical(root: Any, study: str, mdv: str, entries: list[Entry]) -> None:
    clinical = _el(root, "ClinicalData", StudyOID=study, MetaDataVersionOID=mdv)
    current: dict[str, Record] = {}  # event id -> its current value, for corrections and voids
    subjects: set[str] = set()
    others: list[Entry] = []
    for entry in entries:
        record = entry.record
        if not isinstance(record, ClinicalRecord | EventCorrected | EventVoided | RecordSigned):
            others.append(entry)
            continue
        first = entry.participant not in subjects
        subjects.add(entry.participant)
        subject = _el(
            clinical,
            "SubjectData",
            SubjectKey=entry.participant,
            TransactionType="Insert" if first else "Context",
        )
        if isinstance(record, RecordSigned):
            _audit(subject, entry)
            _signature(subject, record)
            continue
        if first:
            _el(subject, "SiteRef", LocationOID=f"LOC.{site_of(entry.participant)}")
        if isinstance(record, ClinicalRecord):
            current[record.id or ""] = record
            group = _group(subject, record, record.id or "", "Insert")
            _audit(group, entry)
            for f in item_fields(type(record)):
                if f.required or getattr(record, f.name) is not None:
                    _item_data(group, record, f.name)
        elif isinstance(record, EventCorrected):
            target = current[record.target]
            current[record.target] = corrected = stored_changes(target, record.changes)
            group = _group(subject, target, record.target, "Update")
            _audit(group, entry, record.reason)
            for name in record.changes:
                _item_data(group, corrected, name)
        else:
            target = current[record.target]
            event = _el(
                subject,
                "StudyEventData",
                StudyEventOID=f"SE.{_tag(type(target))}",
                StudyEventRepeatKey=record.target,
                TransactionType="Remove",
            )
            _audit(event, entry, record.reason)
    if others:
        audit_records = _el(clinical, "AuditRecords")
        for entry in others:
            fields = {k: v for k, v in to_fields(entry.record).items() if k not in NOT_ITEMS[:3]}
            _audit(audit_records, entry, msgspec.json.encode(fields).decode(), EditPoint="DataManagement")


def _group(subject: Any, target: Record, event_id: str, transaction: str) -> Any:
    """StudyEventData/FormData/ItemGroupData of the event ``event_id``; the ItemGroupData."""
    tag = _tag(type(target))
    context = "Insert" if transaction == "Insert" else "Context"
    event = _el(
        subject,
        "StudyEventData",
        StudyEventOID=f"SE.{tag}",
        StudyEventRepeatKey=event_id,
        TransactionType=context,
    )
    form = _el(event, "FormData", FormOID=f"F.{tag}", TransactionType=context)
    return _el(form, "ItemGroupData", ItemGroupOID=f"IG.{tag}", TransactionType=transaction)


def _item_data(group: Any, record: Record, name: str) -> None:
    """The ItemData of one field (``IsNull`` when it has no value)."""
    value = getattr(record, name)
    if value is None:
        _el(group, "ItemData", ItemOID=_item(type(record), name), IsNull="Yes")
    else:
        _el(group, "ItemData", ItemOID=_item(type(record), name), Value=odm_value(value))


def _audit(parent: Any, entry: Entry, reason: str | None = None, **attrs: str) -> None:
    record = entry.record
    audit = _el(parent, "AuditRecord", **attrs)
    _el(audit, "UserRef", UserOID=f"USR.{_user(record)}")
    _el(audit, "LocationRef", LocationOID=f"LOC.{record.site or TRIAL_LOCATION}")
    _el(audit, "DateTimeStamp", utc_text(entry.recorded_at))
    if reason is not None:
        _el(audit, "ReasonForChange", reason)
    _el(audit, "SourceID", record.id or "")


def _signature(subject: Any, record: RecordSigned) -> None:
    signature = _el(subject, "Signature")
    _el(signature, "UserRef", UserOID=f"USR.{_user(record)}")
    _el(signature, "LocationRef", LocationOID=f"LOC.{record.site or TRIAL_LOCATION}")
    _el(signature, "SignatureRef", SignatureOID=f"SIG.{record.meaning}")
    _el(signature, "DateTimeStamp", utc_text(record.signed_at))
    manifest = {
        "algorithm": "Ed25519",
        "message": DOMAIN,
        "signature": record.signature,
        "covers": record.covers,
    }
    _el(signature, "CryptoBindingManifest", msgspec.json.encode(manifest).decode())


def _tag(record_type: type[Record]) -> str:
    return record_type.__struct_config__.tag  # type: ignore[return-value]


def _item(record_type: type[Record], name: str) -> str:
    return f"I.{_tag(record_type)}.{name}"


def _user(record: Record) -> str:
    return record.user or UNIDENTIFIED


# -- reading back ---------------------------------------------------------------------------------


def read_odm(path: str | Path) -> list[Record]:
    """The ledger records an ODM file of :func:`export_odm` holds: SubjectData first, then AuditRecords."""
    root = etree.parse(str(path)).getroot()
    records = [_subject_record(subject) for subject in root.iter(f"{{{NS}}}SubjectData")]
    for audit in root.iterfind(f"{{{NS}}}ClinicalData/{{{NS}}}AuditRecords/{{{NS}}}AuditRecord"):
        fields = msgspec.json.decode(_child(audit, "ReasonForChange"))
        records.append(msgspec.convert({**fields, **_provenance(audit)}, Stored))  # type: ignore[arg-type]
    return records


def _subject_record(subject: Any) -> Record:
    participant = subject.get("SubjectKey")
    signature = subject.find(f"{{{NS}}}Signature")
    if signature is not None:
        manifest = msgspec.json.decode(_child(signature, "CryptoBindingManifest"))
        fields = {
            "participant": participant,
            "meaning": signature.find(f"{{{NS}}}SignatureRef").get("SignatureOID").removeprefix("SIG."),
            "signed_at": _child(signature, "DateTimeStamp"),
            "covers": manifest["covers"],
            "signature": manifest["signature"],
            **_provenance(subject.find(f"{{{NS}}}AuditRecord")),
        }
        return msgspec.convert(fields, RecordSigned)
    event = subject.find(f"{{{NS}}}StudyEventData")
    target = event.get("StudyEventRepeatKey")
    if event.get("TransactionType") == "Remove":
        audit = event.find(f"{{{NS}}}AuditRecord")
        fields = {"target": target, "reason": _child(audit, "ReasonForChange"), **_provenance(audit)}
        return msgspec.convert(fields, EventVoided)
    group = event.find(f"{{{NS}}}FormData/{{{NS}}}ItemGroupData")
    audit = group.find(f"{{{NS}}}AuditRecord")
    record_type = STORED_TYPES[group.get("ItemGroupOID").removeprefix("IG.")]
    types = {f.name: f.type for f in msgspec.structs.fields(record_type)}
    lists = {f.name for f in item_fields(record_type) if f.is_list}
    values: dict[str, Any] = {}
    for item in group.iterfind(f"{{{NS}}}ItemData"):
        name = item.get("ItemOID").rsplit(".", 1)[1]
        text = item.get("Value")
        if item.get("IsNull") == "Yes":
            values[name] = None
        elif name in lists:
            values[name] = msgspec.json.decode(text)
        else:
            values[name] = msgspec.to_builtins(msgspec.convert(text, types[name], strict=False))
    if group.get("TransactionType") == "Update":
        fields = {"target": target, "changes": values, "reason": _child(audit, "ReasonForChange")}
        return msgspec.convert({**fields, **_provenance(audit)}, EventCorrected)
    return msgspec.convert({**values, "participant": participant, **_provenance(audit)}, record_type)


def _provenance(audit: Any) -> dict[str, Any]:
    """``id``, ``user`` and ``site`` of the event an AuditRecord describes."""
    user = audit.find(f"{{{NS}}}UserRef").get("UserOID").removeprefix("USR.")
    site = audit.find(f"{{{NS}}}LocationRef").get("LocationOID").removeprefix("LOC.")
    return {
        "id": _child(audit, "SourceID"),
        "user": None if user == UNIDENTIFIED else user,
        "site": None if site == TRIAL_LOCATION else site,
    }


def _child(parent: Any, tag: str) -> str:
    return parent.find(f"{{{NS}}}{tag}").text or ""
