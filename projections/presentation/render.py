"""Tables a person would rather read than JSON: ``status`` and ``endpoints`` (SPEC section 6).

Every value from the ledger goes through :func:`cell`: rich markup in it is
not interpreted and control characters reach the terminal escaped (issue 11).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from ledger.domain.text import printable

STATUS_STYLE = {
    "complete_remission": "green",
    "completed": "green",
    "recurrence": "yellow",
    "second_course_due": "yellow",
    "screen_failed": "dim",
    "withdrawn": "magenta",
    "died": "red",
}


def cell(value: object) -> str:
    """A stored value as table text: shown as it is, never acting as markup or a terminal escape."""
    return escape(printable(str(value)))


def status_view(data: dict[str, Any]) -> Group:
    """One row per participant, then a count per status."""
    return Group(status_table(data), status_summary(data))


def status_table(data: dict[str, Any]) -> Table:
    title = cell(f"Participants as of {data['as_of']} (known at {data['known_at']})")
    table = Table(title=title, title_justify="left")
    # After an amendment the version that judged each participant is shown too.
    amended = len(data.get("protocol_versions", [])) > 1
    columns = ("participant", "site", "status", "courses", "day 1", "CR date", "flags")
    for column in (*columns, "protocol") if amended else columns:
        table.add_column(column, justify="right" if column == "courses" else "left")
    for row in data["participants"]:
        style = STATUS_STYLE.get(row["status"], "")
        cells = [
            cell(row["participant"]),
            cell(row["site"]),
            f"[{style}]{row['status']}[/]" if style else cell(row["status"]),
            str(row["courses"]),
            cell(row["first_infusion"] or ""),
            cell(row["cr_date"] or ""),
            cell(", ".join(row["flags"])),
        ]
        table.add_row(*cells, *([cell(row["protocol_version"])] if amended else []))
    return table


def status_summary(data: dict[str, Any]) -> Table:
    """Participants per status, and per flag."""
    counts = Counter(row["status"] for row in data["participants"])
    flags = Counter(flag for row in data["participants"] for flag in row["flags"])
    summary = Table(title=f"Trial status as of {data['as_of']}", title_justify="left")
    summary.add_column("status")
    summary.add_column("participants", justify="right")
    for status, count in counts.most_common():
        style = STATUS_STYLE.get(status, "")
        summary.add_row(f"[{style}]{status}[/]" if style else cell(status), str(count))
    summary.add_row("[bold]total screened[/]", f"[bold]{sum(counts.values())}[/]")
    for flag, count in flags.most_common():
        summary.add_row(f"[italic]flag {cell(flag)}[/]", str(count))
    return summary


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def endpoints_view(data: dict[str, Any]) -> Group:
    """The primary endpoint in both populations, then the AE counts by category."""
    primary = Table(
        title=f"Primary endpoint: complete remission as of {data['as_of']} (known at {data['known_at']})",
        title_justify="left",
    )
    for column in ("population", "responders n", "N", "percent", "exact 95% CI", "ongoing"):
        primary.add_column(column, justify="left" if column == "population" else "right")
    for key in ("primary", "primary_itt"):
        block = data[key]
        low, high = block["ci95"]
        ci = "n/a" if low is None else f"{low:.2f} - {high:.2f}"
        primary.add_row(
            block["population"],
            str(block["n"]),
            str(block["N"]),
            _percent(block["percent"]),
            ci,
            str(block["ongoing"]),
        )
    secondary = data["secondary"]
    safety = Table(
        title=(
            "Secondary endpoint: adverse events in the follow-up window of infused participants "
            f"(participants with serious AE: {secondary['participants_with_serious_ae']}, "
            f"with non-serious AE: {secondary['participants_with_nonserious_ae']})"
        ),
        title_justify="left",
    )
    for column in ("category", "participants", "events", "serious events"):
        safety.add_column(column, justify="left" if column == "category" else "right")
    for category, counts in secondary["by_category"].items():
        safety.add_row(
            cell(category), str(counts["participants"]), str(counts["events"]), str(counts["serious_events"])
        )
    lock = data.get("lock") or {}
    state = (
        f"[bold red]Data locked[/] since {cell(lock['since'])} by {cell(lock['by'])}: {cell(lock['reason'])}"
        if lock.get("locked")
        else "Data not locked: values may still change."
    )
    return Group(primary, safety, state)


def protocol_versions_table(rows: list[dict[str, Any]]) -> Table:
    """``protocol show``: one row per adopted version, in recorded order (SPEC section 2)."""
    table = Table(title="Protocol versions", title_justify="left")
    for column in ("version", "effective", "sha256", "recorded at", "by", "reason", "event"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                cell(row[key])
                for key in ("version", "effective", "sha256", "recorded_at", "user", "reason", "event_id")
            )
        )
    return table
