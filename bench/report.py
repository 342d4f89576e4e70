"""``RESULTS.md`` and ``scaling.png`` from the figures of one bench run (:mod:`run`)."""

from __future__ import annotations

from typing import Any

Figures = dict[str, Any]
# The clinical date of the ``status --as-of`` timings: mid-trial, most participants in follow-up.
AS_OF = "2015-06-30"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def _get(row: Figures, *path: str) -> Any:
    for key in path:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _verdict(value: float | None, target: float, at_least: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value >= target if at_least else value <= target
    return "met" if met else "**short**"


def goals(results: Figures) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows of the issue's figures, SQLite at the largest size."""
    sizes = results["sqlite"].get("sizes", {})
    if not sizes:
        return []
    largest = max(sizes, key=int)
    top = sizes[largest]
    n = f"{int(largest):,}"
    rows: list[tuple[str, str, str, str]] = []

    def add(
        goal: str, target: str, value: float | None, shown: str, limit: float, at_least: bool = True
    ) -> None:
        rows.append((goal, target, shown if value is not None else "-", _verdict(value, limit, at_least)))

    rate = _get(top, "import", "rate")
    add(f"import {n} events", ">= 40,000/s", rate, _rate(rate), 40_000)
    ratio = _ratio(rate, _get(top, "raw_insert_events", "rate"))
    add("import / raw executemany (events rows)", ">= 0.25", ratio, f"{ratio or 0:.2f}", 0.25)
    ratio_both = _ratio(rate, _get(top, "raw_insert_both", "rate"))
    add(
        "import / raw executemany (events + ledger rows)",
        "(for reference)",
        ratio_both,
        f"{ratio_both or 0:.2f}",
        0,
    )
    plain = _ratio(rate, _get(top, "plain_import", "rate"))
    add("import / library plain path", ">= 3x", plain, f"{plain or 0:.2f}x", 3)
    for name, label in (("rebuild", "`rebuild`"), ("entries", "`entries()` stream")):
        value = _get(top, name, "rate")
        add(f"{label} {n} events", ">= 100,000/s", value, _rate(value), 100_000)
        scan = _ratio(value, _get(top, "raw_scan", "rate"))
        add(f"{label} / raw scan + msgpack", ">= 0.4", scan, f"{scan or 0:.2f}", 0.4)
        replay = _ratio(value, _get(top, "plain_replay", "rate"))
        add(f"{label} / library notification-log replay", ">= 2x", replay, f"{replay or 0:.2f}x", 2)
        peak = _get(top, name, "peak_mb")
        add(f"{label} peak memory", "< 300 MB", peak, _mb(peak), 300, at_least=False)
    value = _get(top, "verify", "rate")
    add(f"`verify` {n} events", ">= 200,000/s", value, _rate(value), 200_000)
    for name in ("status", "endpoints"):
        value = _get(top, name, "seconds")
        add(f"`{name}` on {n} events", "< 2 s", value, _seconds(value), 2, at_least=False)
        small = _get(results, "small", name, "median_seconds")
        add(
            f"`{name}` on 120 participants, process start included",
            "< 0.5 s",
            small,
            _seconds(small),
            0.5,
            False,
        )
    append = _get(results, "small", "append", "ratio")
    add(
        "one `cmv` append / `python -c 'import eventsourcing, click, msgpack'`",
        "<= 3x",
        append,
        f"{append or 0:.2f}x",
        3,
        at_least=False,
    )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _per_size(store: Figures) -> list[str]:
    rows = []
    for size, row in sorted(store.get("sizes", {}).items(), key=lambda item: int(item[0])):
        rows.append(
            [
                f"{int(size):,}",
                f"{_seconds(_get(row, 'import', 'seconds'))} ({_rate(_get(row, 'import', 'rate'))})",
                _mb(_get(row, "import", "peak_mb")),
                f"{_seconds(_get(row, 'rebuild', 'seconds'))} ({_rate(_get(row, 'rebuild', 'rate'))})",
                _mb(_get(row, "rebuild", "peak_mb")),
                f"{_seconds(_get(row, 'entries', 'seconds'))} ({_rate(_get(row, 'entries', 'rate'))})",
                _mb(_get(row, "entries", "peak_mb")),
                f"{_seconds(_get(row, 'raw_scan', 'seconds'))} ({_rate(_get(row, 'raw_scan', 'rate'))})",
            ]
        )
    header = [
        "events",
        "import",
        "import peak",
        "rebuild",
        "rebuild peak",
        "entries()",
        "entries() peak",
        "raw scan + msgpack",
    ]
    return _table(header, rows)


def _baselines(store: Figures, names: list[tuple[str, str]]) -> list[str]:
    sizes = store.get("sizes", {})
    if not sizes:
        return []
    largest = max(sizes, key=int)
    top = sizes[largest]
    rows = []
    for key, label in names:
        if key in top:
            rows.append(
                [
                    label,
                    _seconds(_get(top, key, "seconds")),
                    _rate(_get(top, key, "rate")),
                    _mb(_get(top, key, "peak_mb")),
                ]
            )
    return [f"At {int(largest):,} events:", "", *_table(["what", "time", "rate", "peak"], rows)]


SQLITE_BASELINES = [
    ("import", "`trial-ledger import` (validation, rules, seal; process start included)"),
    ("import_before", "the same import with the code before issue #7"),
    ("raw_insert_events", "raw `executemany` of the stored events rows, one transaction"),
    ("raw_insert_both", "raw `executemany` of the events and ledger entries rows"),
    ("plain_import", "library plain path: `json`, one `Application.save` per participant, JSON transcoder"),
    ("rebuild", "`trial-ledger rebuild`"),
    ("entries", "`TrialLedger.entries()` stream (own process)"),
    ("raw_scan", "raw scan of the events table + `msgpack.unpackb`"),
    ("plain_replay", "library notification-log replay + mapper (JSON store above)"),
    ("verify", "`trial-ledger verify`"),
    ("status", f"`trial-ledger status --as-of {AS_OF}`"),
    ("endpoints", "`trial-ledger endpoints --known-at NOW`"),
]
PG_BASELINES = [
    ("import", "`trial-ledger import` into a PostgreSQL schema"),
    ("copy_both", "binary `COPY` of the same events and ledger entries rows, one transaction"),
    ("batched_insert_both", "multi-row `INSERT` of 5,000 rows, same rows, one transaction"),
    ("rebuild", "`trial-ledger rebuild`"),
    ("entries", "`TrialLedger.entries()` stream (own process)"),
    ("raw_scan", "raw scan (binary cursor) + `msgpack.unpackb`"),
    ("verify", "`trial-ledger verify`"),
    ("status", f"`trial-ledger status --as-of {AS_OF}`"),
    ("endpoints", "`trial-ledger endpoints --known-at NOW`"),
]


def render(results: Figures) -> str:
    """The Markdown report."""
    out = [
        "# Performance at scale (issue #7)",
        "",
        f"Reproduce with `{results['command']}` from the project root (venv active, PostgreSQL on "
        "127.0.0.1:5432 `test` for the PostgreSQL part).  Generated by `bench/run.py` on "
        f"{results['started']} ({results['machine']}); raw figures in `bench/results.json`.  The "
        "machine is shared and noisy: each figure's baseline is measured in the same run, and the "
        "ratios are the figures to compare between runs.  Data: prefixes of one simulated trial "
        "(`ledger.demo.generate_trial`, written by `bench/generate.py`), every line with a client `id`.",
        "",
        "## Goals",
        "",
        *_table(["goal", "target", "measured", ""], [list(row) for row in goals(results)]),
        "",
        "## SQLite",
        "",
        *_per_size(results["sqlite"]),
        "",
        *_baselines(results["sqlite"], SQLITE_BASELINES),
        "",
        "![import and rebuild time against store size](scaling.png)",
        "",
    ]
    small = results.get("small") or {}
    if small:
        append = small.get("append", {})
        out += [
            f"## A small store ({small.get('events', 0):,} events, 120 enrolled participants)",
            "",
            *_table(
                ["command", "median of runs, process start included"],
                [
                    *[
                        [f"`{name}`", _seconds(_get(small, name, "median_seconds"))]
                        for name in ("status", "endpoints")
                        if name in small
                    ],
                    ["one `trial-ledger cmv ...` append", _seconds(append.get("median_seconds"))],
                    [
                        "`python -c 'import eventsourcing, click, msgpack'`",
                        _seconds(append.get("baseline_median_seconds")),
                    ],
                ],
            ),
            "",
        ]
    if results.get("postgres"):
        out += [
            "## PostgreSQL",
            "",
            *_per_size(results["postgres"]),
            "",
            *_baselines(results["postgres"], PG_BASELINES),
            "",
        ]
    out += [f"- {note}" for note in results.get("notes", [])]
    return "\n".join(out) + "\n"


def plot(results: Figures, path: Any) -> None:
    """Import and rebuild time against store size, SQLite and PostgreSQL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for store, style in (("sqlite", "-"), ("postgres", "--")):
        sizes = (results.get(store) or {}).get("sizes", {})
        ordered = sorted(sizes.items(), key=lambda item: int(item[0]))
        for what, marker in (("import", "o"), ("rebuild", "s"), ("entries", "^")):
            points = [
                (int(n), _get(row, what, "seconds")) for n, row in ordered if _get(row, what, "seconds")
            ]
            if points:
                ax.plot(*zip(*points, strict=True), style, marker=marker, label=f"{store} {what}")
    ax.set_xlabel("events in the store")
    ax.set_ylabel("seconds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("trial-ledger: import and rebuild time vs store size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
