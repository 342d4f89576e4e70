"""The trial report (issue #8): four figures and one self-contained HTML page (SPEC sections 2, 3 and 6).

Everything comes from the projections behind ``status`` and ``endpoints``, so
the report cannot disagree with those commands:

- the tables are the SPEC section 6 JSON of :meth:`Monitor.status
  <projections.readmodel.queries.Monitor.status>` and :meth:`Monitor.endpoints
  <projections.readmodel.queries.Monitor.endpoints>`;
- the figures read each participant's :class:`~ledger.domain.rules.status.ParticipantStatus`
  (:func:`~ledger.domain.rules.status.summarise`) and current adverse events
  (:func:`~ledger.domain.rules.safety.adverse_events`); populations and responders are
  those of :mod:`ledger.domain.rules.endpoints`.

:func:`collect` gathers it all for one ``--as-of`` date and ``--known-at``
moment; :func:`cumulative_incidence` is the estimator behind the remission
curve; :func:`write_report` draws the figures with :mod:`projections.presentation.figures`
(matplotlib, the optional extra ``trial-ledger[report]``, imported only there)
and writes ``index.html`` with every figure embedded as a data URI beside the
PNG files.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple

from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.domain.protocol import Protocol
from ledger.domain.rules.endpoints import in_population, judged, responder
from ledger.domain.rules.safety import adverse_events
from ledger.domain.rules.status import FLAGS, STATUS_PRECEDENCE, ParticipantStatus
from ledger.domain.rules.treatment import study_day, within_follow_up
from projections.readmodel.queries import Monitor, histories

INSTALL_HINT = "pip install 'trial-ledger[report]'"


def mark_days(protocol: Protocol) -> tuple[int, ...]:
    """Study days at which the remission curve is read off (SPEC section 2, protocol values).

    The second-course decision (the day before ``second_course_from_day``), the
    protocol's ``follow_up.milestone_days`` and the last day of the window.
    """
    follow_up = protocol.follow_up
    days = {protocol.treatment.second_course_from_day - 1, *follow_up.milestone_days, follow_up.window_days}
    return tuple(sorted(day for day in days if 1 <= day <= follow_up.window_days))


Outcome = Literal["remission", "competing", "censored"]


@dataclass(frozen=True, slots=True)
class Lane:
    """One infused participant's row of the swimmer plot, in study days (day 1 = first infusion).

    ``last_day`` is the last day of follow-up: the as-of date, death, withdrawal
    or the end of the follow-up window, whichever comes first; ``followed``
    says the participant is still followed on the as-of date.  The other days
    are those of the courses, the CR date, the recurrence, the onsets of serious
    adverse events, death and withdrawal, each only when within the window.
    """

    participant: str
    site: str
    day1: dt.date
    last_day: int
    followed: bool
    courses: tuple[int, ...]
    cr: int | None
    recurrence: int | None
    serious_aes: tuple[int, ...]
    died: int | None
    withdrew: int | None


class Observation(NamedTuple):
    """One mITT participant for the remission curve: what ended the time at risk, and on which day."""

    day: int
    outcome: Outcome


class IncidenceStep(NamedTuple):
    """A point of the cumulative incidence step functions (proportions 0-1, held until the next point).

    ``at_risk`` is the number of participants still at risk at the start of ``day``.
    """

    day: int
    remission: float
    competing: float
    at_risk: int


@dataclass(frozen=True, slots=True)
class ReportData:
    """What the report shows, for one as-of date and one known-at moment.

    ``status`` and ``endpoints`` are the SPEC section 6 JSON objects;
    ``ae_counts`` maps (category, grade, serious) to the number of adverse
    events the secondary endpoint counts (SPEC section 3); ``enrollments`` are
    (site, enrollment date) of the ITT population.
    """

    protocol: Protocol
    store: str
    as_of: dt.date
    known_at: str
    status: dict[str, Any]
    endpoints: dict[str, Any]
    lanes: tuple[Lane, ...]
    observations: tuple[Observation, ...]
    enrollments: tuple[tuple[str, dt.date], ...]
    ae_counts: dict[tuple[str, int, bool], int]

    def remission_steps(self) -> list[IncidenceStep]:
        """The cumulative incidence of complete remission in the mITT population."""
        return cumulative_incidence(self.observations)


def collect(ledger: TrialLedger, as_of: dt.date, known_at: dt.datetime | None, store: str) -> ReportData:
    """Read the ledger on ``as_of`` as known at ``known_at`` (SPEC section 4; None: now).

    The moment is fixed once, so the tables and the figures see the same events.
    """
    moment = known_at or dt.datetime.now(dt.UTC)
    monitor = Monitor(ledger)
    versions = monitor.versions(moment)
    protocol = versions.in_force(as_of).protocol
    lanes: list[Lane] = []
    observations: list[Observation] = []
    enrollments: list[tuple[str, dt.date]] = []
    ae_counts: Counter[tuple[str, int, bool]] = Counter()
    for history, status, version in judged(histories(monitor.view, moment), as_of, versions):
        if status.enrolled is not None:
            enrollments.append((status.site, status.enrolled))
        if not in_population(status, "mITT"):
            continue
        assert status.first_infusion is not None
        day1 = status.first_infusion
        # The adverse events the secondary endpoint counts: onset on days 1 to the window's end.
        window_aes = [
            ae for ae in adverse_events(history, as_of) if within_follow_up(day1, ae.onset, version.protocol)
        ]
        ae_counts.update((ae.category, ae.grade, ae.serious) for ae in window_aes)
        serious = tuple(study_day(day1, ae.onset) for ae in window_aes if ae.serious)
        lanes.append(lane(status, as_of, version.protocol, serious))
        observations.append(observation(status, as_of, version.protocol))
    endpoints = monitor.endpoints(as_of, moment)
    return ReportData(
        protocol=protocol,
        store=store,
        as_of=as_of,
        known_at=endpoints["known_at"],
        status=monitor.status(as_of, moment),
        endpoints=endpoints,
        lanes=tuple(lanes),
        observations=tuple(observations),
        enrollments=tuple(enrollments),
        ae_counts=dict(ae_counts),
    )


def lane(status: ParticipantStatus, as_of: dt.date, protocol: Protocol, serious_aes: Sequence[int]) -> Lane:
    """The swimmer-plot row of an infused participant (``serious_aes``: onset days within the window)."""
    assert status.first_infusion is not None
    day1 = status.first_infusion
    window = protocol.follow_up.window_days

    def day(date: dt.date | None) -> int | None:
        if date is None:
            return None
        number = study_day(day1, date)
        return number if number <= window else None

    died, withdrew = day(status.died), day(status.withdrawn)
    today = study_day(day1, as_of)
    ends = [number for number in (died, withdrew) if number is not None]
    return Lane(
        participant=status.participant,
        site=status.site,
        day1=day1,
        last_day=min([today, window, *ends]),
        followed=status.died is None and status.withdrawn is None and today <= window,
        courses=tuple(study_day(day1, date) for date in status.course_dates),
        cr=day(status.cr_date),
        recurrence=day(status.recurrence),
        serious_aes=tuple(serious_aes),
        died=died,
        withdrew=withdrew,
    )


def observation(status: ParticipantStatus, as_of: dt.date, protocol: Protocol) -> Observation:
    """How an mITT participant enters the remission curve (SPEC section 3, primary endpoint).

    A responder (CR within the window, :func:`~ledger.domain.rules.endpoints.responder`)
    is an event on the CR day; otherwise death or withdrawal within the window
    is a competing event on its day; otherwise the participant is censored at
    the last day followed, the as-of date or the end of the window.
    """
    assert status.first_infusion is not None
    day1 = status.first_infusion
    window = protocol.follow_up.window_days
    if responder(status, protocol) and status.cr_date is not None:
        return Observation(study_day(day1, status.cr_date), "remission")
    ends = [study_day(day1, date) for date in (status.died, status.withdrawn) if date is not None]
    ends = [number for number in ends if number <= window]
    if ends:
        return Observation(min(ends), "competing")
    return Observation(min(study_day(day1, as_of), window), "censored")


def cumulative_incidence(observations: Iterable[Observation]) -> list[IncidenceStep]:
    """Aalen-Johansen cumulative incidence of remission and of the competing events.

    At each day with events, with ``n`` participants at risk (those whose
    observation day is that day or later: censored participants count as at
    risk on their last day), ``d_r`` remissions and ``d_c`` competing events,
    each incidence grows by the event-free proportion just before the day
    times ``d_r / n`` (or ``d_c / n``), and the event-free proportion is
    multiplied by ``1 - (d_r + d_c) / n``.  Without censoring the remission
    incidence at the last day is simply responders / participants.

    Returns the step points in day order: ``(0, 0, 0, N)`` first, one point per
    day with events, and a last point on the last day observed (the curve is
    known up to there, no further).
    """
    ordered = sorted(observations)
    at_risk = len(ordered)
    steps = [IncidenceStep(0, 0.0, 0.0, at_risk)]
    event_free, remission, competing = 1.0, 0.0, 0.0
    last_day, last_at_risk = 0, at_risk
    for day, group in groupby(ordered, key=lambda item: item.day):
        outcomes = Counter(item.outcome for item in group)
        unknown = set(outcomes) - {"remission", "competing", "censored"}
        if unknown:
            raise ValueError(f"unknown outcome {sorted(unknown)[0]!r}")
        events = outcomes["remission"] + outcomes["competing"]
        if events:
            remission += event_free * outcomes["remission"] / at_risk
            competing += event_free * outcomes["competing"] / at_risk
            event_free *= 1 - events / at_risk
            steps.append(IncidenceStep(day, remission, competing, at_risk))
        last_day, last_at_risk = day, at_risk
        at_risk -= sum(outcomes.values())
    if last_day > steps[-1].day:
        steps.append(IncidenceStep(last_day, remission, competing, last_at_risk))
    return steps


def incidence_at(steps: Sequence[IncidenceStep], day: int) -> IncidenceStep | None:
    """The step in force on ``day``, or None past the last day observed."""
    if not steps or day > steps[-1].day:
        return None
    return [step for step in steps if step.day <= day][-1]


def at_risk_on(observations: Iterable[Observation], day: int) -> int:
    """Participants still at risk at the start of ``day`` (observation day on or after it)."""
    return sum(1 for item in observations if item.day >= day)


# -- the page ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageFigure:
    """One figure of the page: its PNG file, title and caption."""

    name: str
    title: str
    caption: str
    png: bytes


def write_report(
    ledger: TrialLedger, out: Path, as_of: dt.date, known_at: dt.datetime | None, store: str
) -> list[Path]:
    """Write the PNG figures and ``index.html`` into ``out`` (created if needed); return their paths.

    Raises :class:`~ledger.domain.errors.InvalidInput` when matplotlib is missing,
    before anything is read or written.
    """
    figures = _figures_module()
    data = collect(ledger, as_of, known_at, store)
    drawn = [
        PageFigure(name, title, caption(data), figures.png(draw(data)))
        for name, title, caption, draw in _figure_plan(figures)
    ]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for figure in drawn:
        path = out / figure.name
        path.write_bytes(figure.png)
        paths.append(path)
    page = out / "index.html"
    page.write_text(render_page(data, drawn), encoding="utf-8")
    return [page, *paths]


def _figures_module() -> ModuleType:
    """:mod:`projections.presentation.figures`, or an error naming the install command without matplotlib."""
    try:
        from projections.presentation import figures
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "matplotlib":
            raise
        raise InvalidInput(
            f"report: matplotlib is not installed; install the report extra: {INSTALL_HINT}"
        ) from None
    return figures


def _figure_plan(
    figures: ModuleType,
) -> list[tuple[str, str, Callable[[ReportData], str], Callable[[ReportData], Any]]]:
    """(file name, title, caption, drawing) of each figure, in page order."""
    return [
        ("swimmer.png", "Follow-up of the infused participants", _swimmer_caption, figures.swimmer_figure),
        (
            "remission.png",
            "Cumulative incidence of complete remission",
            _remission_caption,
            figures.remission_figure,
        ),
        ("enrollment.png", "Enrollment by site", _enrollment_caption, figures.enrollment_figure),
        (
            "adverse_events.png",
            "Adverse events by category and CTCAE grade",
            _ae_caption,
            figures.adverse_event_figure,
        ),
    ]


def _swimmer_caption(data: ReportData) -> str:
    window = data.protocol.follow_up.window_days
    not_infused = max(0, len(data.enrollments) - len(data.lanes))
    return (
        f"One bar per infused participant (mITT, N = {len(data.lanes)}), from day 1 (first infusion) to "
        f"the last day of follow-up: the as-of date, death, withdrawal or day {window}, whichever comes "
        "first; an arrow marks participants still followed. The bar turns green from the CR date and "
        "orange from a recurrence. Participants are grouped by site, then ordered by day 1."
        + (
            f" {not_infused} enrolled participant(s) not infused by the as-of date are not shown."
            if not_infused
            else ""
        )
    )


def _remission_caption(data: ReportData) -> str:
    window = data.protocol.follow_up.window_days
    steps = data.remission_steps()
    marks = []
    for day in mark_days(data.protocol):
        step = incidence_at(steps, day)
        marks.append(f"day {day}: " + ("not yet reached" if step is None else f"{step.remission:.1%}"))
    return (
        f"Aalen-Johansen estimate over study days 0-{window} in the mITT population "
        f"(N = {len(data.observations)}). Event: complete remission within the window, on the CR date "
        "(the responders of the primary endpoint). Competing event: death or withdrawal before CR. "
        "Participants still followed are censored at the as-of date; without censoring the value on "
        f"day {window} equals the primary endpoint's n / N. Cumulative incidence of CR: "
        + "; ".join(marks)
        + "."
    )


def _enrollment_caption(data: ReportData) -> str:
    return (
        f"Cumulative number of participants enrolled (ITT, N = {len(data.enrollments)}), stacked by site, "
        f"by enrollment date; the dashed line is the planned {data.protocol.planned_participants}."
    )


def _ae_caption(data: ReportData) -> str:
    window = data.protocol.follow_up.window_days
    serious = sum(count for (_, _, is_serious), count in data.ae_counts.items() if is_serious)
    return (
        f"Adverse events of infused participants with onset on days 1-{window} (the secondary endpoint, "
        f"{sum(data.ae_counts.values())} events, {serious} serious), with their grade and seriousness after "
        "corrections and after the updates effective on or before the as-of date; voided events are "
        "left out. Hatched: serious events."
    )


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2733;
       max-width: 1180px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.45em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ccd3da; padding-bottom: 0.2em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; margin: 0.8em 0; }
dl.meta dt { font-weight: 600; color: #4a5968; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccd3da; padding: 0.25em 0.6em; }
th { background: #eef1f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #f6f8fa; }
figure { margin: 1.2em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #e1e5ea; }
figcaption { font-size: 0.9em; color: #4a5968; max-width: 62em; }
.note { color: #4a5968; font-size: 0.9em; }
"""


def render_page(data: ReportData, figures: Sequence[PageFigure]) -> str:
    """The HTML page: header, status and endpoint tables, then the figures as data URIs."""
    protocol = data.protocol
    title = f"{protocol.study} report as of {data.as_of.isoformat()}"
    generated = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    meta = [
        ("Study", protocol.study),
        ("Registry", protocol.registry_id),
        ("As of (clinical date)", data.as_of.isoformat()),
        ("Known at (recorded by)", data.known_at),
        ("Store", data.store),
        ("Generated", generated),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(protocol.title)}</h1>",
        '<dl class="meta">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta) + "</dl>",
        "<h2>Participants by site and status</h2>",
        _status_table(data),
        _flag_table(data.status),
        "<h2>Primary endpoint: complete remission within the follow-up window</h2>",
        _primary_table(data.endpoints),
        "<h2>Secondary endpoint: adverse events</h2>",
        _secondary_tables(data.endpoints["secondary"], protocol.follow_up.window_days),
    ]
    for number, figure in enumerate(figures, start=1):
        encoded = base64.b64encode(figure.png).decode("ascii")
        parts += [
            f"<h2>Figure {number}. {_e(figure.title)}</h2>",
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{_e(figure.title)}">',
            f"<figcaption>{_e(figure.caption)} (Also saved as {_e(figure.name)}.)</figcaption></figure>",
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value))


def _row(cells: Iterable[object], css: str = "") -> str:
    """A table row: the first cell is a label, the others are right-aligned numbers."""
    cells_html = "".join(
        f'<td class="num">{_e(cell)}</td>' if index else f"<td>{_e(cell)}</td>"
        for index, cell in enumerate(cells)
    )
    return f'<tr class="{css}">{cells_html}</tr>' if css else f"<tr>{cells_html}</tr>"


def _head(*columns: str) -> str:
    return "<tr>" + "".join(f"<th>{_e(column)}</th>" for column in columns) + "</tr>"


def _status_table(data: ReportData) -> str:
    """Participants screened on or before the as-of date by site (rows) and status (columns)."""
    rows = data.status["participants"]
    counts = Counter((row["site"], row["status"]) for row in rows)
    present = {row["status"] for row in rows}
    statuses = [status for status in reversed(STATUS_PRECEDENCE) if status in present]
    sites = [site for site in data.protocol.sites if any(row["site"] == site for row in rows)]
    sites += sorted({row["site"] for row in rows} - set(sites))
    body = [
        _row([site, *(counts[(site, status)] for status in statuses), sum(r["site"] == site for r in rows)])
        for site in sites
    ]
    totals = [sum(counts[(site, status)] for site in sites) for status in statuses]
    body.append(_row(["all sites", *totals, len(rows)], css="total"))
    return '<table id="status">' + _head("site", *statuses, "total screened") + "".join(body) + "</table>"


def _flag_table(status: dict[str, Any]) -> str:
    """Participants per flag (SPEC section 6)."""
    flags = Counter(flag for row in status["participants"] for flag in row["flags"])
    return (
        '<table id="flags">'
        + _head("flag", "participants")
        + "".join(_row([flag, flags[flag]]) for flag in FLAGS)
        + "</table>"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _primary_table(endpoints: dict[str, Any]) -> str:
    """mITT and ITT rows of the primary endpoint, numbers as ``endpoints`` gives them."""
    body = []
    for key in ("primary", "primary_itt"):
        block = endpoints[key]
        low, high = block["ci95"]
        body.append(
            _row(
                [
                    block["population"],
                    block["n"],
                    block["N"],
                    _percent(block["percent"]),
                    _percent(low),
                    _percent(high),
                    block["ongoing"],
                ]
            )
        )
    return (
        '<table id="primary">'
        + _head("population", "responders n", "N", "percent", "95% CI low", "95% CI high", "ongoing")
        + "".join(body)
        + "</table>"
        + '<p class="note">Percent and exact (Clopper-Pearson) 95% confidence interval in percent; '
        "mITT: at least one infusion, ITT: all enrolled (SPEC section 3).</p>"
    )


def _secondary_tables(secondary: dict[str, Any], window: int) -> str:
    """Participants with serious and non-serious AEs, then counts by category."""
    participants = (
        '<table id="secondary">'
        + _head("infused participants with", "participants")
        + _row(["at least one serious AE", secondary["participants_with_serious_ae"]])
        + _row(["at least one non-serious AE", secondary["participants_with_nonserious_ae"]])
        + "</table>"
    )
    rows = [
        _row([category, counts["participants"], counts["events"], counts["serious_events"]])
        for category, counts in secondary["by_category"].items()
    ]
    return (
        participants
        + '<table id="by_category">'
        + _head("category", "participants", "events", "serious events")
        + "".join(rows)
        + "</table>"
        + f'<p class="note">Adverse events of infused participants with onset on days 1-{window}, '
        "values after corrections and updates effective on or before the as-of date (SPEC section 3).</p>"
    )
