"""Import-format lines (SPEC section 6) for tests: valid by default, overridable field by field."""

from __future__ import annotations

import json
from typing import Any

from ledger.application.trial_ledger import Line
from ledger.domain.events import decode_line
from ledger.domain.rules.sites import site_of


def screening(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "ParticipantScreened",
        "participant": participant,
        "site": site_of(participant),
        "effective": "2014-01-06",
        "age_years": 42,
        "sex": "F",
        "refractory_cmv": "infection",
        "consent_date": "2014-01-05",
        "consent_by": "participant",
        "hr": 78,
        "rr": 16,
        "sbp": 118,
        "dbp": 76,
        **fields,
    }


def enrollment(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "ParticipantEnrolled",
        "participant": participant,
        "effective": "2014-01-08",
        "weight_kg": 61.5,
        **fields,
    }


def infusion(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "MSCInfused",
        "participant": participant,
        "effective": "2014-01-09",
        "course": 1,
        "cells_per_kg": 1000000,
        **fields,
    }


def cmv(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    line = {
        "type": "CMVLoadMeasured",
        "participant": participant,
        "effective": "2014-01-16",
        "specimen": "plasma",
        "assay": "COBAS AmpliPrep/COBAS TaqMan CMV",
        "lloq_iu_ml": 137,
        "result": "quantified",
        "value_iu_ml": 5400,
        **fields,
    }
    if line["result"] != "quantified" and "value_iu_ml" not in fields:
        del line["value_iu_ml"]
    return line


def disease(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "CMVDiseaseAssessed",
        "participant": participant,
        "effective": "2014-01-20",
        "status": "resolved",
        **fields,
    }


def adverse_event(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "AdverseEventReported",
        "participant": participant,
        "effective": "2014-01-12",
        "ae_id": "AE-1",
        "term": "Fever",
        "category": "infusion_reaction",
        "grade": 2,
        "serious": False,
        "criteria": [],
        "causality": "possible",
        "aware_at": "2014-01-12T09:30:00+08:00",
        **fields,
    }


def ae_update(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "AdverseEventUpdated",
        "participant": participant,
        "ae_id": "AE-1",
        "effective": "2014-01-15",
        "outcome": "recovered",
        "resolved_date": "2014-01-15",
        **fields,
    }


def withdrawal(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {
        "type": "ParticipantWithdrew",
        "participant": participant,
        "effective": "2014-03-01",
        "reason": "consent withdrawn",
        **fields,
    }


def death(participant: str = "NFH-001", **fields: Any) -> dict[str, Any]:
    return {"type": "ParticipantDied", "participant": participant, "effective": "2014-04-01", **fields}


def correction(target: str, changes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "type": "EventCorrected",
        "target": target,
        "changes": changes,
        "reason": "source check",
        **fields,
    }


def void(target: str, **fields: Any) -> dict[str, Any]:
    return {"type": "EventVoided", "target": target, "reason": "entered in error", **fields}


def treated(participant: str = "NFH-001") -> list[dict[str, Any]]:
    """A participant screened, enrolled and infused, each line with a client id."""
    return [
        screening(participant, id=f"{participant}-scr"),
        enrollment(participant, id=f"{participant}-enr"),
        infusion(participant, id=f"{participant}-inf1"),
    ]


def as_lines(dicts: list[dict[str, Any]]) -> list[Line]:
    """Numbered, decoded lines as the importer makes them."""
    return [Line(n, decode_line(json.dumps(d))) for n, d in enumerate(dicts, start=1)]


def jsonl(dicts: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(d) + "\n" for d in dicts)
