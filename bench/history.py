"""Write cost against a participant's history (issue 14, goal 3).

One store holds one participant per history length (screened, enrolled, infused,
then a CMV result every day); on each, one ``cmv`` append and one ``correct`` of
an earlier result are timed as users run them (a fresh ``trial-ledger`` process),
median of several runs.  The participants share one store, so only the length of
their own history differs between them.

    python bench/history.py /tmp/history.db      # prints the figures as JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

HISTORY_LENGTHS = (100, 300, 1000, 3000)
RUNS = 7
FIRST_DAY = dt.date(2014, 2, 3)
SITE = "NFH"
ASSAY = "COBAS AmpliPrep/COBAS TaqMan CMV Test"


def participant_lines(code: str, events: int) -> list[dict[str, Any]]:
    """Import lines of one participant with ``events`` events: screening, enrollment, infusion, daily CMV."""
    day = FIRST_DAY

    def on(days: int) -> str:
        return (day + dt.timedelta(days=days)).isoformat()

    lines: list[dict[str, Any]] = [
        {
            "type": "ParticipantScreened",
            "id": f"{code}-scr",
            "participant": code,
            "site": SITE,
            "effective": on(0),
            "age_years": 40,
            "sex": "F",
            "refractory_cmv": "infection",
            "consent_date": on(0),
            "consent_by": "participant",
            "hr": 80,
            "rr": 16,
            "sbp": 120,
            "dbp": 80,
        },
        {
            "type": "ParticipantEnrolled",
            "id": f"{code}-enr",
            "participant": code,
            "effective": on(1),
            "weight_kg": 60,
        },
        {
            "type": "MSCInfused",
            "id": f"{code}-inf-1",
            "participant": code,
            "effective": on(2),
            "course": 1,
            "cells_per_kg": 1000000,
            "lot": "MSC-14-001",
        },
    ]
    for number in range(events - len(lines)):
        lines.append(_cmv(code, f"{code}-cmv-{number}", on(3 + number)))
    return lines


def _cmv(code: str, event_id: str | None, effective: str) -> dict[str, Any]:
    line = {
        "type": "CMVLoadMeasured",
        "participant": code,
        "effective": effective,
        "specimen": "plasma",
        "assay": ASSAY,
        "lloq_iu_ml": 137,
        "result": "not_detected",
    }
    return {"id": event_id, **line} if event_id else line


def cmv_append(participant: str, effective: str) -> tuple[str, ...]:
    """The command line of one appended CMV result (not detected) of ``participant`` on ``effective``."""
    return (
        "cmv",
        "--participant",
        participant,
        "--effective",
        effective,
        "--specimen",
        "plasma",
        "--assay",
        ASSAY,
        "--lloq-iu-ml",
        "137",
        "--result",
        "not_detected",
    )


def code_of(events: int) -> str:
    """The participant with ``events`` events: ``NFH-8`` and the length (``NFH-83000``)."""
    return f"{SITE}-8{events:04d}"


def bench_history(
    store: str,
    work: Path,
    cli: Callable[..., Any],
    lengths: tuple[int, ...] = HISTORY_LENGTHS,
    runs: int = RUNS,
) -> dict[str, Any]:
    """Median seconds of one append and one correction per history length; ``cli(store, *args)`` runs one."""
    source = work / "history.jsonl"
    with source.open("w") as out:
        for events in lengths:
            for line in participant_lines(code_of(events), events):
                out.write(json.dumps(line) + "\n")
    cli(store, "import", str(source))
    figures: dict[str, Any] = {}
    for events in lengths:
        code = code_of(events)
        appends, corrections = [], []
        last = FIRST_DAY + dt.timedelta(days=events)
        for number in range(-1, runs):  # run -1 warms the caches
            effective = (last + dt.timedelta(days=number + 1)).isoformat()
            appends.append(cli(store, *cmv_append(code, effective)).seconds)
            value = 200 + number + 1
            corrections.append(
                cli(
                    store,
                    "correct",
                    "--target",
                    f"{code}-cmv-{events // 2}",
                    "--changes",
                    json.dumps({"result": "quantified", "value_iu_ml": value}),
                    "--reason",
                    "lab report",
                ).seconds
            )
        figures[str(events)] = {
            "append_seconds": statistics.median(appends[1:]),
            "correct_seconds": statistics.median(corrections[1:]),
            "append_runs": appends[1:],
            "correct_runs": corrections[1:],
        }
    return figures


def main() -> None:
    import run

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", type=Path)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    run.remove_sqlite(args.store)
    print(json.dumps(bench_history(str(args.store), args.store.parent, run.cli, runs=args.runs), indent=1))


if __name__ == "__main__":
    main()
