"""The report's four figures, drawn with matplotlib on the Agg canvas (issue #8; SPEC sections 2 and 3).

matplotlib is the optional extra ``trial-ledger[report]``: only
:func:`projections.presentation.report.write_report` imports this module, when a report is
asked for.  Figures are built on :class:`matplotlib.figure.Figure` with an Agg
canvas, not through pyplot: no display, no global state, nothing to close.
Each drawing function takes the :class:`~projections.presentation.report.ReportData` and
returns a figure; :func:`png` renders one.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import matplotlib.dates as mdates
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ledger.domain.events import CATEGORIES
from projections.presentation.report import at_risk_on, incidence_at, mark_days

if TYPE_CHECKING:
    from projections.presentation.report import Lane, ReportData

DPI = 110
WIDTH = 11.0  # inches

GRADE_COLOURS = {1: "#a6d96a", 2: "#fee08b", 3: "#fdae61", 4: "#d7191c", 5: "#40004b"}
"""CTCAE grades 1-5, from mild (green) to death (dark purple)."""

BAR = "#cfd8dc"
IN_REMISSION = "#a5d6a7"
AFTER_RECURRENCE = "#ffcc80"
COURSE_1 = "#1a3d7c"
COURSE_2 = "#4fa3f7"
REMISSION = "#1b7f3b"
RECURRENCE = "#e65100"
SERIOUS_AE = "#c62828"
DEATH = "#111111"
WITHDRAWAL = "#8e24aa"
FOLLOWED = "#607d8b"
COMPETING = "#78909c"


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, rendered by the Agg canvas."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _empty(figure: Figure | SubFigure, message: str) -> Figure:
    """``figure`` (or the figure holding it) with ``message`` where the plot would be."""
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#4a5968")
    return figure.figure  # type: ignore[return-value]


# -- 1. swimmer plot -----------------------------------------------------------------------


def swimmer_figure(data: ReportData) -> Figure:
    """One lane per infused participant over study days, grouped by site, then by day 1."""
    window = data.protocol.follow_up.window_days
    site_rank = {site: rank for rank, site in enumerate(data.protocol.sites)}
    lanes = sorted(
        data.lanes, key=lambda lane: (site_rank.get(lane.site, len(site_rank)), lane.site, lane.day1)
    )
    count = len(lanes)
    height = 1.6 + 0.165 * max(count, 6)
    figure = Figure(figsize=(WIDTH, height + 0.9), layout="constrained")
    # The title and the legend get their own band above the plot, so neither hides the other.
    head, body = figure.subfigures(2, 1, height_ratios=[0.9, height])
    title = f"Follow-up of the infused participants (mITT, N = {count}) as of {data.as_of.isoformat()}"
    head.suptitle(title, fontsize=13, fontweight="bold")
    head.legend(handles=_swimmer_legend(), loc="lower center", ncols=6, fontsize=8.5, frameon=False)
    if not lanes:
        return _empty(body, "No participant infused on or before the as-of date.")
    axes = body.add_subplot()
    rows = range(count)
    _site_bands(axes, lanes)
    axes.barh(rows, [lane.last_day for lane in lanes], left=0.5, height=0.62, color=BAR, zorder=1)
    for index, lane in enumerate(lanes):
        if lane.cr is not None:
            axes.barh(
                index,
                lane.last_day + 0.5 - lane.cr,
                left=lane.cr,
                height=0.62,
                color=IN_REMISSION,
                zorder=1.1,
            )
        if lane.recurrence is not None:
            axes.barh(
                index,
                lane.last_day + 0.5 - lane.recurrence,
                left=lane.recurrence,
                height=0.62,
                color=AFTER_RECURRENCE,
                zorder=1.2,
            )
    _lane_markers(axes, lanes)

    size = 6.5 if count > 60 else 8
    axes.set_yticks(list(rows), [lane.participant for lane in lanes], fontsize=size)
    axes.set_ylim(count - 0.4, -0.6)
    ticks = sorted({1, *mark_days(data.protocol), *range(90, window, 90)})
    axes.set_xticks(ticks)
    axes.set_xlim(-2, window * 1.04)
    axes.tick_params(axis="x", labeltop=True, top=True, labelsize=9)
    axes.grid(axis="x", color="#b0bec5", linewidth=0.6, linestyle=":", zorder=0)
    axes.set_xlabel("Study day (day 1 = first infusion)")
    axes.spines[["right", "top"]].set_visible(False)
    return figure


def _site_bands(axes: Axes, lanes: list[Lane]) -> None:
    """Shade every other site's lanes and name the site on the right."""
    groups: list[tuple[str, int, int]] = []
    for index, lane in enumerate(lanes):
        if groups and groups[-1][0] == lane.site:
            groups[-1] = (lane.site, groups[-1][1], index)
        else:
            groups.append((lane.site, index, index))
    for number, (_, first, last) in enumerate(groups):
        if number % 2 == 0:
            axes.axhspan(first - 0.5, last + 0.5, color="#eef1f4", zorder=0)
    right = axes.secondary_yaxis("right")
    right.set_yticks(
        [(first + last) / 2 for _, first, last in groups],
        [f"{site} ({last - first + 1})" for site, first, last in groups],
        fontsize=9,
    )
    right.tick_params(length=0)


def _lane_markers(axes: Axes, lanes: list[Lane]) -> None:
    """Courses, CR, recurrence, serious AEs, withdrawal, death, and an arrow while still followed."""

    def one(day: int | None) -> list[int]:
        return [] if day is None else [day]

    marks: list[tuple[Callable[[Lane], Iterable[int]], str, str, float, float]] = [
        (lambda lane: lane.courses[:1], "v", COURSE_1, 30, 5),
        (lambda lane: lane.courses[1:], "v", COURSE_2, 30, 5),
        (lambda lane: one(lane.cr), "o", REMISSION, 26, 6),
        (lambda lane: one(lane.recurrence), "P", RECURRENCE, 40, 6),
        (lambda lane: lane.serious_aes, "*", SERIOUS_AE, 70, 7),
        (lambda lane: one(lane.withdrew), "s", WITHDRAWAL, 30, 8),
        (lambda lane: one(lane.died), "X", DEATH, 42, 8),
        (lambda lane: one(lane.last_day + 5 if lane.followed else None), ">", FOLLOWED, 22, 4),
    ]
    for days_of, marker, colour, size, order in marks:
        placed = [(day, row) for row, lane in enumerate(lanes) for day in days_of(lane)]
        if placed:
            axes.scatter(
                [day for day, _ in placed],
                [row for _, row in placed],
                marker=marker,
                s=size,
                color=colour,
                zorder=order,
                linewidths=0.4,
                edgecolors="white" if marker in "o*P" else colour,
            )


def _swimmer_legend() -> list[Patch | Line2D]:
    def mark(marker: str, colour: str, label: str, size: float = 7) -> Line2D:
        return Line2D([], [], marker=marker, color=colour, linestyle="none", markersize=size, label=label)

    return [
        Patch(color=BAR, label="followed, no CR yet"),
        Patch(color=IN_REMISSION, label="in complete remission"),
        Patch(color=AFTER_RECURRENCE, label="after recurrence"),
        mark("v", COURSE_1, "course 1 (day 1)"),
        mark("v", COURSE_2, "course 2 or later"),
        mark("o", REMISSION, "CR date"),
        mark("P", RECURRENCE, "recurrence"),
        mark("*", SERIOUS_AE, "serious AE onset", 9),
        mark("s", WITHDRAWAL, "withdrawal"),
        mark("X", DEATH, "death"),
        mark(">", FOLLOWED, "still followed"),
    ]


# -- 2. cumulative incidence of complete remission -----------------------------------------


def remission_figure(data: ReportData) -> Figure:
    """Cumulative incidence of CR and of the competing events, read off at the :func:`mark_days`."""
    window = data.protocol.follow_up.window_days
    steps = data.remission_steps()
    figure = Figure(figsize=(WIDTH, 6.0), layout="constrained")
    figure.suptitle(
        f"Cumulative incidence of complete remission (mITT, N = {len(data.observations)}) "
        f"as of {data.as_of.isoformat()}",
        fontsize=13,
        fontweight="bold",
    )
    if not data.observations:
        return _empty(figure, "No participant infused on or before the as-of date.")
    axes = figure.add_subplot()
    axes.set_title(
        "Aalen-Johansen estimate; death or withdrawal before CR is a competing event; "
        "participants still followed are censored at the as-of date",
        fontsize=9,
        color="#4a5968",
        loc="left",
    )
    days = [step.day for step in steps]
    axes.step(
        days,
        [100 * step.remission for step in steps],
        where="post",
        color=REMISSION,
        linewidth=2.2,
        label="complete remission",
    )
    axes.step(
        days,
        [100 * step.competing for step in steps],
        where="post",
        color=COMPETING,
        linewidth=1.6,
        linestyle="--",
        label="death or withdrawal before CR (competing)",
    )
    second = data.protocol.treatment.second_course_from_day
    axes.axvline(second - 0.5, color="#90a4ae", linewidth=0.8, linestyle=":", zorder=0)
    axes.text(
        second + 1,
        97,
        f"second course due from day {second} without CR",
        fontsize=8.5,
        color="#607d8b",
        va="top",
    )
    offsets = {0: (18, -22), 1: (18, -10), 2: (-20, -26)}
    unreached = []
    for number, day in enumerate(mark_days(data.protocol)):
        step = incidence_at(steps, day)
        if step is None:
            unreached.append(f"day {day}")
            continue
        value = 100 * step.remission
        axes.plot([day], [value], marker="o", color=REMISSION, markersize=7, markeredgecolor="white")
        axes.annotate(
            f"day {day}: {value:.1f}%",
            (day, value),
            xytext=offsets.get(number, (12, -16)),
            textcoords="offset points",
            fontsize=10,
            fontweight="bold",
            color=REMISSION,
            ha="right" if day >= window else "left",
            arrowprops={"arrowstyle": "-", "color": REMISSION, "linewidth": 0.8},
        )
    if unreached:
        axes.text(
            0.99,
            0.40,
            f"estimated up to day {steps[-1].day}; {', '.join(unreached)} not yet reached",
            transform=axes.transAxes,
            ha="right",
            fontsize=9,
            color="#4a5968",
        )
    ticks = sorted({0, *mark_days(data.protocol), *range(90, window, 90)})
    axes.set_xticks(ticks, [f"{day}\n{at_risk_on(data.observations, day)}" for day in ticks])
    axes.set_xlim(0, window + 5)
    axes.set_ylim(0, 100)
    axes.set_yticks(range(0, 101, 10))
    axes.set_xlabel("Study day (day 1 = first infusion); below each day: participants still at risk")
    axes.set_ylabel("Cumulative incidence (%)")
    axes.grid(color="#cfd8dc", linewidth=0.6)
    axes.spines[["right", "top"]].set_visible(False)
    axes.legend(loc="center right", fontsize=9, frameon=False)
    return figure


# -- 3. enrollment by site -----------------------------------------------------------------


def enrollment_figure(data: ReportData) -> Figure:
    """Cumulative enrolled participants, stacked by site, with the planned total."""
    planned = data.protocol.planned_participants
    figure = Figure(figsize=(WIDTH, 5.6), layout="constrained")
    figure.suptitle(
        f"Enrollment by site (ITT, N = {len(data.enrollments)}) as of {data.as_of.isoformat()}",
        fontsize=13,
        fontweight="bold",
    )
    if not data.enrollments:
        return _empty(figure, "No participant enrolled on or before the as-of date.")
    axes = figure.add_subplot()
    per_site = Counter(site for site, _ in data.enrollments)
    sites = [site for site in data.protocol.sites if site in per_site]
    sites += sorted(set(per_site) - set(sites))
    dates = sorted({date for _, date in data.enrollments})
    start = (dates[0] - dt.timedelta(days=1)).replace(day=1)  # a month start, so the axis names the year
    end = min(data.as_of, dates[-1] + dt.timedelta(days=31))
    xs = [start, *dates, end]
    counts = [
        [sum(1 for where, date in data.enrollments if where == site and date <= x) for x in xs]
        for site in sites
    ]
    names = data.protocol.sites
    labels = [f"{site} {names.get(site, '')} ({per_site[site]})".replace("  ", " ") for site in sites]
    palette = colormaps["tab10"]
    colours = [palette(index % palette.N) for index in range(len(sites))]
    axes.stackplot(
        mdates.date2num(xs), counts, labels=labels, colors=colours, step="post", alpha=0.85, linewidth=0
    )
    axes.axhline(planned, color="#37474f", linestyle="--", linewidth=1)
    axes.annotate(
        f"planned {planned}",
        (mdates.date2num(end), planned),
        xytext=(-4, 4),
        textcoords="offset points",
        ha="right",
        fontsize=9,
        color="#37474f",
    )
    total = len(data.enrollments)
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.set_xlim(mdates.date2num(xs[0]), mdates.date2num(end))
    axes.set_ylim(0, max(planned, total) * 1.1)
    axes.set_ylabel("Participants enrolled (cumulative)")
    axes.set_xlabel("Enrollment date")
    axes.grid(color="#cfd8dc", linewidth=0.6)
    axes.spines[["right", "top"]].set_visible(False)
    handles, legend_labels = axes.get_legend_handles_labels()
    axes.legend(
        handles[::-1],
        legend_labels[::-1],
        loc="upper left",
        fontsize=8.5,
        frameon=True,
        framealpha=0.9,
        title="site (enrolled)",
        title_fontsize=8.5,
    )
    return figure


# -- 4. adverse events by category and grade -----------------------------------------------


def adverse_event_figure(data: ReportData) -> Figure:
    """Events per category as bars stacked by CTCAE grade, serious parts hatched."""
    window = data.protocol.follow_up.window_days
    figure = Figure(figsize=(WIDTH, 6.0), layout="constrained")
    figure.suptitle(
        f"Adverse events by category and CTCAE grade, days 1-{window} of infused participants, "
        f"as of {data.as_of.isoformat()}",
        fontsize=13,
        fontweight="bold",
    )
    if not data.ae_counts:
        return _empty(figure, "No adverse event counted on or before the as-of date.")
    axes = figure.add_subplot()
    categories = list(CATEGORIES) + sorted({c for c, _, _ in data.ae_counts} - set(CATEGORIES))
    widest = max(
        sum(n for (c, _, _), n in data.ae_counts.items() if c == category) for category in categories
    )
    for row, category in enumerate(categories):
        left = 0
        for grade in sorted(GRADE_COLOURS):
            for serious in (False, True):
                width = data.ae_counts.get((category, grade, serious), 0)
                if not width:
                    continue
                axes.barh(
                    row,
                    width,
                    left=left,
                    height=0.7,
                    color=GRADE_COLOURS[grade],
                    hatch="////" if serious else None,
                    edgecolor="#f5f5f5" if grade == 5 else "#37474f",
                    linewidth=0.4,
                )
                left += width
        serious_count = sum(
            n for (c, _, is_serious), n in data.ae_counts.items() if c == category and is_serious
        )
        label = f"{left}" + (f"  ({serious_count} serious)" if serious_count else "")
        axes.text(left + widest * 0.01, row, label, va="center", fontsize=9)
    axes.set_yticks(range(len(categories)), categories, fontsize=10)
    axes.set_ylim(len(categories) - 0.5, -0.5)
    axes.set_xlim(0, widest * 1.22)
    axes.set_xlabel("Adverse events (number)")
    axes.grid(axis="x", color="#cfd8dc", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.spines[["right", "top"]].set_visible(False)
    handles: list[Patch] = [
        Patch(facecolor=colour, label=f"grade {grade}", edgecolor="#37474f", linewidth=0.4)
        for grade, colour in GRADE_COLOURS.items()
    ]
    handles.append(
        Patch(facecolor="white", edgecolor="#37474f", hatch="////", label="serious", linewidth=0.4)
    )
    axes.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=9,
        title="CTCAE grade",
        title_fontsize=9,
        frameon=False,
    )
    return figure
