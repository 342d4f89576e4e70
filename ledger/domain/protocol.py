"""Protocol parameters (SPEC sections 1-3, the values marked *param*).

They live in a TOML protocol definition file; the NFH-MSC-CMV-2014 one ships
with the package and is the default.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import msgspec

DEFAULT_PROTOCOL = Path(__file__).parent.parent / "protocols" / "NFH-MSC-CMV-2014.toml"


class Eligibility(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    age_min: int
    age_max: int
    hr: tuple[int, int]
    rr: tuple[int, int]
    sbp: tuple[int, int]
    dbp: tuple[int, int]


class Treatment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    target_cells_per_kg: float
    dose_tolerance: float
    second_course_from_day: int


class Remission(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    samples: int
    min_gap_days: int


class FollowUp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_days: int


class Safety(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sae_report_hours: float


class Protocol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    study: str
    registry_id: str
    title: str
    planned_participants: int
    sites: dict[str, str]
    eligibility: Eligibility
    treatment: Treatment
    remission: Remission
    follow_up: FollowUp
    safety: Safety


@cache
def load_protocol(path: str | Path = DEFAULT_PROTOCOL) -> Protocol:
    """Read and validate a protocol definition file."""
    try:
        return msgspec.toml.decode(Path(path).read_bytes(), type=Protocol)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"protocol file {path}: {exc}") from None
