"""The protocol version that judges a participant (SPEC section 2, protocol versions)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.events import ProtocolAdopted
from ledger.domain.protocol import DEFAULT_PROTOCOL, load_protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.versions import (
    AdoptedProtocol,
    ProtocolVersions,
    content_hash,
    judged_on,
    judging_version,
    judging_versions,
)
from tests.builders import Ledger

PROTOCOL = load_protocol()
D = dt.date.fromisoformat


def adopted(version: str, effective: str) -> AdoptedProtocol:
    return AdoptedProtocol(PROTOCOL, version, D(effective), content_hash(version.encode()))


V1, V2, V3 = adopted("1.0", "2014-01-01"), adopted("2.0", "2015-01-01"), adopted("3.0", "2016-01-01")


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("2013-06-30", "1.0"),  # before the first adoption: the first version
        ("2014-01-01", "1.0"),
        ("2014-12-31", "1.0"),
        ("2015-01-01", "2.0"),  # effective that very day
        ("2015-12-31", "2.0"),
        ("2016-01-01", "3.0"),
        ("2030-01-01", "3.0"),
    ],
)
def test_the_version_in_force_is_the_latest_effective_on_or_before_the_date(on: str, expected: str) -> None:
    # Recorded out of effective-date order: the effective dates decide, not the recording order.
    assert ProtocolVersions((V2, V1, V3)).in_force(D(on)).version == expected


def test_of_two_versions_effective_the_same_day_the_later_recorded_wins() -> None:
    amended = adopted("2.1", "2015-01-01")
    assert ProtocolVersions((V1, V2, amended)).in_force(D("2015-06-01")).version == "2.1"
    assert ProtocolVersions((V1, amended, V2)).in_force(D("2015-06-01")).version == "2.0"


def test_enrollment_judges_an_enrolled_participant_and_screening_one_never_enrolled() -> None:
    versions = ProtocolVersions((V1, V2))
    assert judged_on(D("2014-12-20"), D("2015-01-03")) == D("2015-01-03")
    assert judged_on(D("2014-12-20"), None) == D("2014-12-20")
    assert versions.for_participant(D("2014-12-20"), D("2015-01-03")).version == "2.0"
    assert versions.for_participant(D("2014-12-20"), None).version == "1.0"
    assert versions.for_participant(D("2014-12-20"), D("2014-12-31")).version == "1.0"


def test_a_trial_has_at_least_one_version() -> None:
    with pytest.raises(ValueError) as refused:
        ProtocolVersions(())
    assert str(refused.value) == "a trial has at least one protocol version"


def test_a_version_is_named_by_the_sha256_of_its_file_and_shown_with_its_dates() -> None:
    assert content_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert V2.to_json() == {"version": "2.0", "effective": "2015-01-01", "sha256": content_hash(b"2.0")}


def test_a_trial_that_never_amended_has_one_unversioned_version_in_force_on_every_date() -> None:
    [only] = ProtocolVersions.only(PROTOCOL).adopted
    assert (only.protocol, only.version, only.effective, only.sha256) == (
        PROTOCOL,
        "unversioned",
        dt.date.min,
        "0" * 64,
    )
    named = ProtocolVersions.only(PROTOCOL, "1.0", "a" * 64).in_force(dt.date.min)
    assert (named.version, named.sha256) == ("1.0", "a" * 64)


def test_the_judging_version_follows_the_latest_screening_and_the_first_enrollment() -> None:
    ledger = Ledger()
    ledger.screen(effective=D("2014-12-20"), consent_date=D("2014-12-20"))
    ledger.enroll(effective=D("2015-01-03"))
    ledger.enroll(effective=D("2016-02-03"))  # refused on write; were it stored, the first counts
    history = fold(ledger.entries)["NFH-001"]
    versions = ProtocolVersions((V1, V2, V3))
    assert judging_version(history, D("2014-12-19"), versions) is None
    assert judging_version(history, D("2014-12-20"), versions) == V1
    assert judging_version(history, D("2016-06-01"), versions) == V2
    rescreened = Ledger()
    rescreened.screen(effective=D("2014-12-20"), consent_date=D("2014-12-20"))
    rescreened.screen(effective=D("2015-01-05"), consent_date=D("2015-01-05"))
    assert judging_version(fold(rescreened.entries)["NFH-001"], D("2015-06-01"), versions) == V2


@given(
    st.lists(st.dates(dt.date(2010, 1, 1), dt.date(2030, 1, 1)), min_size=1, max_size=6),
    st.dates(dt.date(2005, 1, 1), dt.date(2035, 1, 1)),
)
def test_the_version_in_force_never_starts_after_the_date_unless_none_had_started(
    effective: list[dt.date], on: dt.date
) -> None:
    versions = ProtocolVersions(
        tuple(AdoptedProtocol(PROTOCOL, str(i), day, "0" * 64) for i, day in enumerate(effective))
    )
    chosen = versions.in_force(on)
    started = [v for v in versions.adopted if v.effective <= on]
    if started:
        assert chosen.effective == max(v.effective for v in started)
        assert all(v.effective <= chosen.effective for v in started)
    else:
        assert chosen.effective == min(effective)


def test_a_version_keeps_its_place_among_the_adopted() -> None:
    versions = ProtocolVersions((V1, V2, V3))
    assert [versions.index(v) for v in (V1, V2, V3)] == [0, 1, 2]
    assert ProtocolVersions((V1, V2, V3, adopted("4.0", "2013-01-01"))).index(V2) == 1


@pytest.mark.parametrize(
    "other",
    [
        (V1, adopted("2.1", "2015-01-01")),  # another version number
        (V1, adopted("2.0", "2015-01-02")),  # another effective date
        (V1, AdoptedProtocol(PROTOCOL, "2.0", D("2015-01-01"), "f" * 64)),  # another text
        (V2, V1),  # the same versions recorded in another order
        (V1,),
    ],
)
def test_the_fingerprint_tells_apart_versions_that_judge_otherwise(
    other: tuple[AdoptedProtocol, ...],
) -> None:
    mine = ProtocolVersions((V1, V2))
    assert ProtocolVersions((V1, V2)).fingerprint == mine.fingerprint
    assert ProtocolVersions(other).fingerprint != mine.fingerprint
    text = f"{V1.sha256} 1.0 2014-01-01\n{V2.sha256} 2.0 2015-01-01"
    assert mine.fingerprint == content_hash(text.encode("utf-8"))


def test_the_versions_adopted_are_parsed_from_the_ledgers_records_else_the_file_opened_with() -> None:
    # A text this process has not parsed yet (each is parsed once, then kept).
    text = DEFAULT_PROTOCOL.read_bytes().decode("utf-8") + f"# {uuid.uuid4().hex}\n"
    record = ProtocolAdopted(
        study=PROTOCOL.study,
        version="1.0",
        effective=D("2014-01-01"),
        sha256=content_hash(text.encode("utf-8")),
        content=text,
        reason="adopted by init",
        id="PROTOCOL#1",
    )
    versions = judging_versions([("PROTOCOL#1", record)], V3)
    [version] = versions.adopted
    assert (version.version, version.effective, version.sha256) == ("1.0", D("2014-01-01"), record.sha256)
    assert version.protocol == PROTOCOL
    assert judging_versions([("PROTOCOL#1", record)], V3).adopted[0].protocol is version.protocol
    assert judging_versions([], V3).adopted == (V3,)
