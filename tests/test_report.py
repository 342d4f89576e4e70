"""``trial-ledger report`` (issue #8): figures and HTML page agree with ``endpoints`` (SPEC section 3).

A 20-participant demo trial is imported once into a SQLite store; the report
is written at an interim as-of date (some participants still followed, so the
remission curve has censored participants) and checked against
:class:`~projections.readmodel.queries.Monitor`.  The cumulative incidence estimator is
checked on a hand-made case.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import struct
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application.importer import import_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.simulation.demo import generate_trial, write_jsonl
from projections.presentation.report import (
    IncidenceStep,
    Observation,
    collect,
    cumulative_incidence,
    incidence_at,
)
from projections.readmodel.queries import Monitor

AS_OF = dt.date(2015, 6, 30)
AFTER_FOLLOW_UP = dt.date(2017, 6, 30)
KNOWN_AT = "2100-01-01T00:00:00Z"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("swimmer.png", "remission.png", "enrollment.png", "adverse_events.png")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store holding the 20-participant demo trial (seed 1), imported like site data."""
    path = str(tmp_path_factory.mktemp("report") / "trial.db")
    text = io.StringIO()
    write_jsonl(generate_trial(participants=20, seed=1), text)
    import_lines(TrialLedger(path), io.BytesIO(text.getvalue().encode()), user="dm")
    return path


class Tables(HTMLParser):
    """The text of every cell of every ``<table id=...>``, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.current = dict(attrs).get("id") or ""
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.tables[self.current].append([])
        elif tag in ("td", "th") and self.current is not None:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.tables[self.current][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def test_cumulative_incidence_hand_made_case() -> None:
    # Five participants: CR on days 10 and 10, death before CR on day 20, still
    # followed on day 30, CR on day 40, and one followed to day 45.
    observations = [
        Observation(40, "remission"),
        Observation(10, "remission"),
        Observation(30, "censored"),
        Observation(20, "competing"),
        Observation(10, "remission"),
        Observation(45, "censored"),
    ]
    steps = cumulative_incidence(observations)
    # Day 10: 2 of 6 at risk -> 2/6; event-free 4/6.  Day 20: 1 competing of 4 -> 4/6 * 1/4;
    # event-free 3/6.  Day 30: censored.  Day 40: 1 of 2 -> + 3/6 * 1/2; event-free 1/4.
    expected = [
        IncidenceStep(0, 0.0, 0.0, 6),
        IncidenceStep(10, 2 / 6, 0.0, 6),
        IncidenceStep(20, 2 / 6, 1 / 6, 4),
        IncidenceStep(40, 2 / 6 + 1 / 4, 1 / 6, 2),
        IncidenceStep(45, 2 / 6 + 1 / 4, 1 / 6, 1),
    ]
    assert [step.day for step in steps] == [step.day for step in expected]
    for got, want in zip(steps, expected, strict=True):
        assert got.remission == pytest.approx(want.remission)
        assert got.competing == pytest.approx(want.competing)
        assert got.at_risk == want.at_risk
    assert incidence_at(steps, 9) == steps[0]
    assert incidence_at(steps, 39) == steps[2]
    assert incidence_at(steps, 45) == steps[-1]
    assert incidence_at(steps, 46) is None  # past the longest follow-up


def test_without_censoring_the_incidence_is_the_plain_proportion() -> None:
    observations = [Observation(day, "remission") for day in (8, 15, 15, 30)]
    observations += [Observation(365, "censored"), Observation(50, "competing")]
    steps = cumulative_incidence(observations)
    assert steps[-1] == IncidenceStep(365, pytest.approx(4 / 6), pytest.approx(1 / 6), 1)
    assert cumulative_incidence([]) == [IncidenceStep(0, 0.0, 0.0, 0)]
    with pytest.raises(ValueError, match="unknown outcome"):
        cumulative_incidence([Observation(3, "cured")])  # type: ignore[arg-type]


def test_report_writes_the_page_and_four_figures(store: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "--store",
            store,
            "--json",
            "report",
            "--out",
            str(out),
            "--as-of",
            AS_OF.isoformat(),
            "--known-at",
            KNOWN_AT,
        ],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer == {"out": str(out), "files": [str(out / name) for name in ("index.html", *FIGURES)]}

    page = (out / "index.html").read_text(encoding="utf-8")
    embedded = [part.split('"', 1)[0] for part in page.split('src="data:image/png;base64,')[1:]]
    assert len(embedded) == 4
    for name, encoded in zip(FIGURES, embedded, strict=True):
        data = (out / name).read_bytes()
        assert base64.b64decode(encoded) == data, f"{name} is not the embedded image"
        width, height = _png_size(data)
        assert width >= 800 and height >= 400 and len(data) > 10_000, (name, width, height, len(data))

    monitor = Monitor(TrialLedger(store))
    known_at = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    endpoints = monitor.endpoints(AS_OF, known_at)
    assert endpoints["primary"]["ongoing"] > 0  # an interim look: the curve has censored participants
    assert f"<dd>{KNOWN_AT}</dd>" in page and f"<dd>{AS_OF.isoformat()}</dd>" in page
    assert "NCT02083731" in page

    parser = Tables()
    parser.feed(page)
    tables = parser.tables
    for row, key in zip(tables["primary"][1:], ("primary", "primary_itt"), strict=True):
        block = endpoints[key]
        low, high = block["ci95"]
        assert row == [
            block["population"],
            str(block["n"]),
            str(block["N"]),
            _percent(block["percent"]),
            _percent(low),
            _percent(high),
            str(block["ongoing"]),
        ]
    secondary = endpoints["secondary"]
    assert tables["secondary"][1:] == [
        ["at least one serious AE", str(secondary["participants_with_serious_ae"])],
        ["at least one non-serious AE", str(secondary["participants_with_nonserious_ae"])],
    ]
    assert tables["by_category"][1:] == [
        [category, str(counts["participants"]), str(counts["events"]), str(counts["serious_events"])]
        for category, counts in secondary["by_category"].items()
    ]
    status = monitor.status(AS_OF, known_at)["participants"]
    assert tables["status"][-1][-1] == str(len(status))
    header = tables["status"][0]
    for name, count in Counter(row["status"] for row in status).items():
        assert tables["status"][-1][header.index(name)] == str(count)


def test_figure_data_agree_with_the_endpoints(store: str) -> None:
    """Same populations, responders and counted AEs as ``endpoints`` (no second rule set)."""
    ledger = TrialLedger(store)
    monitor = Monitor(ledger)
    for as_of in (AS_OF, AFTER_FOLLOW_UP):
        data = collect(ledger, as_of, None, store)
        endpoints = monitor.endpoints(as_of, None)
        assert len(data.lanes) == len(data.observations) == endpoints["primary"]["N"]
        assert len(data.enrollments) == endpoints["primary_itt"]["N"]
        remissions = sum(1 for item in data.observations if item.outcome == "remission")
        assert remissions == endpoints["primary"]["n"]
        for category, counts in endpoints["secondary"]["by_category"].items():
            mine = {key: n for key, n in data.ae_counts.items() if key[0] == category}
            assert sum(mine.values()) == counts["events"]
            assert sum(n for (_, _, serious), n in mine.items() if serious) == counts["serious_events"]
    # Every window closed: nobody censored before day 365, so the curve ends at n / N.
    last = data.remission_steps()[-1]
    assert 100 * last.remission == pytest.approx(endpoints["primary"]["percent"], abs=0.005)


def test_report_without_matplotlib_names_the_install_command(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.presentation

    # As if matplotlib had never been installed: forget the figures module if an earlier test loaded it.
    monkeypatch.delitem(sys.modules, "projections.presentation.figures", raising=False)
    monkeypatch.delattr(projections.presentation, "figures", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["--store", store, "report", "--out", str(out)])
    assert result.exit_code == 2
    assert "pip install 'trial-ledger[report]'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
