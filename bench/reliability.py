"""The long reliability run of issue #7: the CI reliability tests, at full size.

    python bench/reliability.py

runs ``tests/test_crash.py`` (a 100,000-line import killed with SIGKILL 20
times, on SQLite and on PostgreSQL), ``tests/test_bad_input.py`` (50,000
malformed files in-process, 1,000 through the command line),
``tests/test_concurrency.py``, ``tests/test_pg_faults.py`` and
``tests/test_reliability.py`` with ``TRIAL_LEDGER_LONG=1``, and writes
``bench/RELIABILITY.md``: each test, its outcome and duration, and what the
crash test recorded (kills that left nothing, kills after the commit).  It
takes many minutes; CI runs the same tests at their small default size.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = [
    "tests/test_crash.py",
    "tests/test_bad_input.py",
    "tests/test_concurrency.py",
    "tests/test_pg_faults.py",
    "tests/test_reliability.py",
]


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch) / "junit.xml"
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                *TESTS,
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "junit_family=legacy",
                f"--junitxml={junit}",
            ],
            cwd=HERE.parent,
            env={**os.environ, "TRIAL_LEDGER_LONG": "1"},
            check=False,
        )
        cases = ET.parse(junit).getroot().iter("testcase")
        rows = []
        for case in cases:
            outcome = (
                "failed"
                if case.find("failure") is not None or case.find("error") is not None
                else ("skipped" if case.find("skipped") is not None else "passed")
            )
            properties = ", ".join(f"{p.get('name')} = {p.get('value')}" for p in case.iter("property"))
            rows.append(
                f"| {case.get('name')} | {outcome} | {float(case.get('time', 0)):.1f} s | {properties} |"
            )
    report = [
        "# Reliability, long run (issue #7)",
        "",
        f"`python bench/reliability.py` on {started}: {' '.join(TESTS)} with `TRIAL_LEDGER_LONG=1` "
        f"(pytest exit {done.returncode}).",
        "",
        "| test | outcome | time | recorded |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]
    (HERE / "RELIABILITY.md").write_text("\n".join(report))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
