"""Protocol parameters (SPEC sections 1-3, the values marked *param*).

They live in a TOML protocol definition file; the NFH-MSC-CMV-2014 one ships
with the package and is the default.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

Positive = Annotated[int, Meta(ge=1)]

DEFAULT_PROTOCOL = Path(__file__).parent.parent / "protocols" / "NFH-MSC-CMV-2014.toml"


class Eligibility(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    age_min: int
    age_max: int
    hr: tuple[int, int]
    rr: tuple[int, int]
    sbp: tuple[int, int]
    dbp: tuple[int, int]


class Treatment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``max_courses``: courses beyond it are a ``course_deviation``."""

    target_cells_per_kg: Annotated[float, Meta(gt=0)]
    dose_tolerance: Annotated[float, Meta(ge=0)]
    second_course_from_day: Positive
    max_courses: Positive


class Remission(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    samples: Positive
    min_gap_days: Annotated[int, Meta(ge=0)]


class FollowUp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``milestone_days``: study days the report reads its curves off, besides the
    second-course decision (the day before ``second_course_from_day``) and the
    window's last day."""

    window_days: Positive
    milestone_days: list[Positive]


class Safety(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sae_report_hours: float


class Protocol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    study: str
    registry_id: str
    title: str
    planned_participants: int
    country: Annotated[str, Meta(pattern="^[A-Z]{3}$", description="ISO 3166-1 alpha-3 of every site")]
    sites: dict[str, str]
    eligibility: Eligibility
    treatment: Treatment
    remission: Remission
    follow_up: FollowUp
    safety: Safety
    # The version of the protocol document and the date it takes effect (``protocol
    # adopt`` needs the version; ``init`` adopts the file from its ``effective`` date).
    version: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._ ()-]{0,39}$")] | None = None
    effective: dt.date | None = None


@cache
def load_protocol(path: str | Path = DEFAULT_PROTOCOL) -> Protocol:
    """Read and validate a protocol definition file."""
    return parse_protocol(Path(path).read_bytes(), str(path))


def parse_protocol(text: bytes, source: str) -> Protocol:
    """Validate the text of a protocol definition file (``source`` names it in errors).

    The text is TOML, or the JSON of a :class:`Protocol` (a TOML file cannot start
    with ``{``), which is how a protocol given as an object is kept.
    """
    try:
        if text.lstrip().startswith(b"{"):
            return msgspec.json.decode(text, type=Protocol)
        return msgspec.toml.decode(text, type=Protocol)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"protocol file {source}: {exc}") from None
