"""Primary and secondary endpoints (SPEC sections 3 and 6, ``endpoints``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ledger.domain.events import CATEGORIES
from ledger.domain.protocol import Protocol, load_protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.endpoints import (
    Judged,
    endpoints,
    in_population,
    judged,
    ongoing,
    primary,
    responder,
    secondary,
    versions_used,
)
from ledger.domain.rules.stats import proportion_percent
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions
from tests.builders import D0, Ledger, day, remission_days

PROTOCOL = load_protocol()


def run(ledger: Ledger, as_of: dt.date) -> dict[str, Any]:
    return endpoints(fold(ledger.entries).values(), as_of, ProtocolVersions.only(PROTOCOL))


def cr(ledger: Ledger, participant: str, first: int, second: int) -> None:
    ledger.cmv(participant, on=day(first))
    ledger.cmv(participant, on=day(second))


def test_empty_trial_has_null_percent_and_ci() -> None:
    result = run(Ledger(), D0)
    assert result["primary"] == {
        "population": "mITT",
        "n": 0,
        "N": 0,
        "percent": None,
        "ci95": [None, None],
        "ongoing": 0,
    }
    assert result["primary_itt"]["population"] == "ITT"
    assert result["primary_itt"]["ci95"] == [None, None]
    assert list(result["secondary"]["by_category"]) == list(CATEGORIES)
    assert all(
        counts == {"participants": 0, "events": 0, "serious_events": 0}
        for counts in result["secondary"]["by_category"].values()
    )


def trial() -> Ledger:
    """Eight participants covering each primary-endpoint outcome."""
    ledger = Ledger()
    # 001: CR on day 8.
    ledger.treated("NFH-001")
    cr(ledger, "NFH-001", 3, 8)
    # 002: treated, no CR yet.
    ledger.treated("NFH-002")
    # 003: enrolled, not yet infused.
    ledger.screen("NFH-003")
    ledger.enroll("NFH-003")
    # 004: treated, died on day 20 without CR.
    ledger.treated("NFH-004")
    ledger.death("NFH-004", on=day(20))
    # 005: enrolled, withdrew before any infusion.
    ledger.screen("NFH-005")
    ledger.enroll("NFH-005")
    ledger.withdraw("NFH-005", on=day(-1))
    # 006: screen failure: in no population.
    ledger.screen("NFH-006", age_years=80)
    # 007: CR completed on day 365 (in the window); 008: on day 366 (outside).
    ledger.treated("NFH-007")
    cr(ledger, "NFH-007", 360, 365)
    ledger.treated("NFH-008")
    cr(ledger, "NFH-008", 361, 366)
    return ledger


def test_primary_within_window() -> None:
    result = run(trial(), day(30))
    # mITT = 001, 002, 004, 007, 008; responders: 001; ongoing: 002, 007, 008.
    n, total = 1, 5
    percent, low, high = proportion_percent(n, total)
    assert result["primary"] == {
        "population": "mITT",
        "n": n,
        "N": total,
        "percent": percent,
        "ci95": [low, high],
        "ongoing": 3,
    }
    assert percent == 20.0
    # ITT adds 003 (ongoing, not infused) and 005 (withdrawn: non-responder).
    itt = result["primary_itt"]
    assert (itt["n"], itt["N"], itt["ongoing"]) == (1, 7, 4)
    assert itt["percent"] == 14.29


def test_primary_day_365_vs_366() -> None:
    at_365 = run(trial(), day(365))["primary"]
    assert (at_365["n"], at_365["N"], at_365["ongoing"]) == (2, 5, 2)  # 002 and 008 open
    at_366 = run(trial(), day(366))["primary"]
    # 008 reaches CR on day 366: outside the window, and the window is closed.
    assert (at_366["n"], at_366["N"], at_366["ongoing"]) == (2, 5, 0)
    assert at_366["percent"] == 40.0
    assert at_366["ci95"] == [5.27, 85.34]


def test_as_of_before_infusion_moves_participants_between_populations() -> None:
    result = run(trial(), day(0))
    # Nobody infused yet: mITT is empty, ITT holds the six enrolled minus 005 withdrawn.
    assert result["primary"]["N"] == 0
    assert result["primary"]["percent"] is None
    itt = result["primary_itt"]
    assert (itt["n"], itt["N"], itt["ongoing"]) == (0, 7, 6)
    assert itt["ci95"] == [0.0, 40.96]


def test_cr_lost_retroactively_changes_the_endpoint() -> None:
    ledger = trial()
    ledger.cmv("NFH-001", on=day(5), result="quantified")
    result = run(ledger, day(30))
    assert result["primary"]["n"] == 0
    assert result["primary"]["ongoing"] == 4


def test_responder_who_died_later_stays_a_responder() -> None:
    ledger = trial()
    ledger.death("NFH-001", on=day(40))
    result = run(ledger, day(50))["primary"]
    assert (result["n"], result["ongoing"]) == (1, 3)


# -- secondary -----------------------------------------------------------------------


def test_secondary_counts() -> None:
    ledger = Ledger()
    ledger.treated("NFH-001")
    ledger.treated("NFH-002")
    ledger.screen("NFH-003")
    ledger.enroll("NFH-003")
    # 001: onset on day 0 does not count, day 1 and day 365 do, day 366 does not.
    ledger.ae("NFH-001", on=day(0), ae_id="A0", category="infection")
    ledger.ae("NFH-001", on=day(1), ae_id="A1", category="infusion_reaction")
    ledger.ae("NFH-001", on=day(365), ae_id="A2", category="infection", serious=True)
    ledger.ae("NFH-001", on=day(366), ae_id="A3", category="infection", serious=True)
    # 002: two events of one category, one serious, one voided.
    ledger.ae("NFH-002", on=day(5), ae_id="B1", category="gvhd_acute", serious=True)
    ledger.ae("NFH-002", on=day(6), ae_id="B2", category="gvhd_acute")
    voided = ledger.ae("NFH-002", on=day(7), ae_id="B3", category="cardiac_toxicity")
    ledger.void(voided)
    # 003: never infused: its AEs are not counted.
    ledger.ae("NFH-003", on=day(5), ae_id="C1", category="other", serious=True)

    result = run(ledger, day(400))["secondary"]
    assert result["participants_with_serious_ae"] == 2
    assert result["participants_with_nonserious_ae"] == 2
    by = result["by_category"]
    assert by["infection"] == {"participants": 1, "events": 1, "serious_events": 1}
    assert by["infusion_reaction"] == {"participants": 1, "events": 1, "serious_events": 0}
    assert by["gvhd_acute"] == {"participants": 1, "events": 2, "serious_events": 1}
    assert by["cardiac_toxicity"] == {"participants": 0, "events": 0, "serious_events": 0}
    assert by["other"] == {"participants": 0, "events": 0, "serious_events": 0}
    # As of day 100, the day-365 AE has not happened yet.
    early = run(ledger, day(100))["secondary"]
    assert early["by_category"]["infection"]["events"] == 0
    assert early["participants_with_serious_ae"] == 1


def test_secondary_uses_corrections_and_updates_by_as_of() -> None:
    ledger = Ledger()
    ledger.treated("NFH-001")
    report = ledger.ae("NFH-001", on=day(3), ae_id="A1", category="other")
    ledger.correct(report, category="hepatic_toxicity")
    ledger.ae_update("NFH-001", on=day(10), ae_id="A1", serious=True, criteria=["hospitalisation"])
    ledger.ae_update("NFH-001", on=day(20), ae_id="A1", serious=False, criteria=[])

    def counts(as_of: dt.date) -> tuple[int, int, dict[str, int]]:
        result = run(ledger, as_of)["secondary"]
        return (
            result["participants_with_serious_ae"],
            result["participants_with_nonserious_ae"],
            result["by_category"]["hepatic_toxicity"],
        )

    assert counts(day(9)) == (0, 1, {"participants": 1, "events": 1, "serious_events": 0})
    assert counts(day(10)) == (1, 0, {"participants": 1, "events": 1, "serious_events": 1})
    assert counts(day(20)) == (0, 1, {"participants": 1, "events": 1, "serious_events": 0})
    assert run(ledger, day(20))["secondary"]["by_category"]["other"]["events"] == 0


def test_known_at_is_a_prefix_of_the_ledger() -> None:
    # The caller filters by recorded_at; a correction recorded later is simply absent.
    ledger = Ledger()
    ledger.treated("NFH-001")
    report = ledger.ae("NFH-001", on=day(3), ae_id="A1", category="other")
    known_at = ledger.clock
    ledger.correct(report, category="renal_toxicity")
    earlier = [e for e in ledger.entries if e.recorded_at <= known_at]
    then = endpoints(fold(earlier).values(), day(30), ProtocolVersions.only(PROTOCOL))["secondary"][
        "by_category"
    ]
    now = run(ledger, day(30))["secondary"]["by_category"]
    assert (then["other"]["events"], then["renal_toxicity"]["events"]) == (1, 0)
    assert (now["other"]["events"], now["renal_toxicity"]["events"]) == (0, 1)


@pytest.mark.parametrize("offset", [0, 1])
def test_the_window_bounds_responders_ongoing_and_safety(protocol: Protocol, offset: int) -> None:
    """Under each protocol: CR and AE onset on the window's last day count, the day after not."""
    window = protocol.follow_up.window_days
    ledger = Ledger(dose=protocol.treatment.target_cells_per_kg)
    ledger.treated("NFH-001")
    for number in remission_days(window + offset, protocol.remission):
        ledger.cmv("NFH-001", on=day(number))
    ledger.treated("NFH-002")
    ledger.ae("NFH-002", on=day(window + offset), serious=True)
    result = endpoints(fold(ledger.entries).values(), day(window + offset), ProtocolVersions.only(protocol))
    inside = offset == 0
    assert (result["primary"]["n"], result["primary"]["N"]) == (1 if inside else 0, 2)
    assert result["primary"]["ongoing"] == (1 if inside else 0)  # NFH-002 while the window is open
    assert result["secondary"]["participants_with_serious_ae"] == (1 if inside else 0)


# -- the pieces, on their own (issue 16) -----------------------------------------------------


def _rows(ledger: Ledger, as_of: dt.date, versions: ProtocolVersions) -> list[Judged]:
    return judged(fold(ledger.entries).values(), as_of, versions)


def test_the_versions_used_are_named_in_order_of_effective_date() -> None:
    first = AdoptedProtocol(PROTOCOL, "1.0", day(-100), "1" * 64)
    amended = AdoptedProtocol(PROTOCOL, "2.0", day(-5), "2" * 64)
    ledger = Ledger()
    ledger.treated("NFH-002")  # enrolled on day -2: judged by the amendment
    ledger.screen("NFH-001", effective=day(-30), consent_date=day(-30))  # screened only, before it
    ledger.screen("NFH-003", effective=day(-30), consent_date=day(-30))
    result = endpoints(fold(ledger.entries).values(), D0, ProtocolVersions((first, amended)))
    assert result["protocol_versions"] == [first.to_json(), amended.to_json()]
    assert versions_used([]) == []


def test_an_unknown_population_is_named() -> None:
    [row] = _rows(_one_treated(), D0, ProtocolVersions.only(PROTOCOL))
    with pytest.raises(ValueError) as refused:
        in_population(row.status, "PP")
    assert str(refused.value) == "unknown population 'PP'"
    assert primary([row], D0)["population"] == "mITT"


def _one_treated() -> Ledger:
    ledger = Ledger()
    ledger.treated("NFH-001")
    return ledger


def test_responder_and_ongoing_are_false_not_merely_falsy() -> None:
    ledger = _one_treated()
    ledger.death("NFH-001", on=day(10))
    [row] = _rows(ledger, day(10), ProtocolVersions.only(PROTOCOL))
    assert responder(row.status, PROTOCOL) is False
    assert ongoing(row.status, day(10), PROTOCOL) is False


def test_a_participant_not_yet_infused_does_not_hide_the_adverse_events_of_others() -> None:
    ledger = Ledger()
    ledger.screen("NFH-001")
    ledger.enroll("NFH-001")
    ledger.treated("NFH-002")
    ledger.ae("NFH-002", on=day(3), serious=True)
    result = secondary(_rows(ledger, day(10), ProtocolVersions.only(PROTOCOL)), day(10))
    assert result["participants_with_serious_ae"] == 1
    assert result["by_category"]["infection"] == {"participants": 1, "events": 1, "serious_events": 1}
