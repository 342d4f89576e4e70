"""Submission work in a terminal (issue 15): what ``export sdtm`` wrote and found, what ``coding`` lists."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from projections.presentation.render import cell

SHOWN_FINDINGS = 20  # the rest are in export.json and in --json


def submission_view(summary: dict[str, Any]) -> Group:
    """What ``export sdtm`` wrote, then the conformance table and the first findings."""
    define = summary["define"]
    schema = "valid" if define["valid"] else "[red]NOT valid[/]"
    header = (
        f"SDTMIG {summary['sdtmig']} datasets in {cell(summary['dir'])} as of {summary['as_of']}"
        f" (known at {summary['known_at']}); {define['file']} {schema} against {define['schema']}"
    )
    parts: list[Any] = [
        Text.from_markup(header),
        datasets_table(summary),
        rules_table(summary["conformance"]),
    ]
    if summary["conformance"]["findings"]:
        parts.append(findings_table(summary["conformance"]))
    return Group(*parts)


def datasets_table(summary: dict[str, Any]) -> Table:
    table = Table()
    table.add_column("dataset")
    table.add_column("file")
    table.add_column("records", justify="right")
    for name, rows in summary["datasets"].items():
        files = [f for f in summary["files"] if f.split(".")[0] == name.lower()]
        table.add_row(name, ", ".join(files), str(rows))
    return table


def rules_table(report: dict[str, Any]) -> Table:
    errors = report["errors"]
    verdict = "[green]no error[/]" if errors == 0 else f"[red]{errors} error(s)[/]"
    table = Table(title=f"CDISC conformance: {verdict}", title_justify="left")
    for column in ("rule", "checks", "severity", "findings"):
        table.add_column(column, justify="right" if column == "findings" else "left")
    for rule in report["rules"]:
        count = rule["findings"]
        style = "green" if count == 0 else "red" if rule["severity"] == "error" else "yellow"
        table.add_row(rule["id"], rule["description"], rule["severity"], f"[{style}]{count}[/]")
    return table


def findings_table(report: dict[str, Any]) -> Table:
    findings = report["findings"]
    more = len(findings) - SHOWN_FINDINGS
    title = "Findings" + (f" (first {SHOWN_FINDINGS}; {more} more in export.json)" if more > 0 else "")
    table = Table(title=title, title_justify="left")
    for column in ("rule", "dataset", "variable", "subject", "record", "finding"):
        table.add_column(column)
    for finding in findings[:SHOWN_FINDINGS]:
        table.add_row(
            finding["rule"],
            finding["dataset"],
            finding["variable"],
            cell(finding["usubjid"] or ""),
            "" if finding["record"] is None else str(finding["record"]),
            cell(finding["message"]),
        )
    return table


def coding_table(data: dict[str, Any]) -> Table | Text:
    """The adverse events still to code, one a row, as a coder works through them."""
    uncoded = data["uncoded"]
    if not uncoded:
        return Text(f"no adverse event to code as known at {data['known_at']}")
    title = f"Adverse events to code as known at {data['known_at']}: {len(uncoded)}"
    table = Table(title=title, title_justify="left")
    for column in ("participant", "ae_id", "onset", "verbatim term", "why"):
        table.add_column(column, overflow="fold")
    for term in uncoded:
        table.add_row(term["participant"], term["ae_id"], term["onset"], cell(term["term"]), term["reason"])
    return table
