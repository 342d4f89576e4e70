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


def goals(results: Figures, store: str = "sqlite") -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows of the issue's figures, at the largest size of ``store``."""
    sizes = (results.get(store) or {}).get("sizes", {})
    if not sizes:
        return []
    largest = max(sizes, key=int)
    top = sizes[largest]
    n = f"{int(largest):,}"
    rows: list[tuple[str, str, str, str]] = []

    def add(
        goal: str, target: str | None, value: float | None, shown: str, limit: float, at_least: bool = True
    ) -> None:
        verdict = "(reference)" if target is None else _verdict(value, limit, at_least)
        rows.append((goal, target or "-", shown if value is not None else "-", verdict))

    def ratio(
        goal: str, target: str | None, a: float | None, b: float | None, limit: float, unit: str
    ) -> None:
        value = _ratio(a, b)
        add(goal, target, value, f"{value or 0:.2f}{unit}", limit)

    rate = _get(top, "import", "rate")
    add(f"import {n} events", ">= 40,000/s", rate, _rate(rate), 40_000)
    if store == "sqlite":
        ratio(
            "import / raw executemany (events rows)",
            ">= 0.25",
            rate,
            _get(top, "raw_insert_events", "rate"),
            0.25,
            "",
        )
        ratio(
            "import / raw executemany (events + ledger rows)",
            None,
            rate,
            _get(top, "raw_insert_both", "rate"),
            0,
            "",
        )
        ratio("import / library plain path", ">= 3x", rate, _get(top, "plain_import", "rate"), 3, "x")
        before = _get(top, "import_before", "rate")
        if before is not None:
            ratio("import / the same import before issue #7", None, rate, before, 0, "x")
    else:
        ratio("import / binary COPY of the same rows", None, rate, _get(top, "copy_both", "rate"), 0, "")
        ratio(
            "import / batched INSERT of the same rows",
            None,
            rate,
            _get(top, "batched_insert_both", "rate"),
            0,
            "x",
        )
    for name, label in (("rebuild", "`rebuild`"), ("entries", "`entries()` stream")):
        value = _get(top, name, "rate")
        add(f"{label} {n} events", ">= 100,000/s", value, _rate(value), 100_000)
        ratio(f"{label} / raw scan + msgpack", ">= 0.4", value, _get(top, "raw_scan", "rate"), 0.4, "")
        if store == "sqlite":
            ratio(
                f"{label} / library notification-log replay",
                ">= 2x",
                value,
                _get(top, "plain_replay", "rate"),
                2,
                "x",
            )
        peak = _get(top, name, "peak_mb")
        add(f"{label} peak memory", "< 300 MB", peak, _mb(peak), 300, at_least=False)
    value = _get(top, "verify", "rate")
    add(f"`verify` {n} events", ">= 200,000/s", value, _rate(value), 200_000)
    for name in ("status", "endpoints"):
        value = _get(top, name, "seconds")
        add(f"`{name}` on {n} events", "< 2 s", value, _seconds(value), 2, at_least=False)
        if store == "sqlite":
            small = _get(results, "small", name, "median_seconds")
            add(
                f"`{name}` on 120 participants, process start included",
                "< 0.5 s",
                small,
                _seconds(small),
                0.5,
                at_least=False,
            )
    if store == "sqlite":
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


NOTES = [
    "",
    "## Where the import's time goes",
    "",
    "From cProfile runs of `TrialLedger.record` on 100,000 and 300,000 lines (one machine, not part of "
    "this run): about 3.5 us a line to decode and validate the JSON (msgspec, regex patterns), 5 us for "
    "the protocol rules (`rules.check_clinical` on an indexed chart), 6 us to build the domain events and "
    "map them to stored events (the library's mapper, recordings), 4 us for the seal's hashing (content, "
    "leaf, chain, tree) and 8 us in SQLite for the two tables' rows (the raw `executemany` of the events "
    "and ledger entries rows above).  The import stays in one process and one `Application.save` (one "
    "transaction); past the shortcuts already taken, the remaining time is spread over these parts, and "
    "40,000/s would need a second core (parsing and checking in parallel with the database writes) or a "
    "smaller stored state.",
    "",
    "`status` and `endpoints` on a million events read every participant's timeline from the read model "
    "and replay it in Python at every call (`projections/readmodel/queries.py`): the read path below them "
    "(`entries()`) streams at the rate above, but the queries themselves would need a persisted projection "
    "per participant to answer in under 2 s.",
    "",
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
        "(`ledger.simulation.demo.generate_trial`, written by `bench/generate.py`), "
        "every line with a client `id`."
        + (
            "  `--before DIR` times the same import on the source tree of commit 22a09ab (the write path "
            "before issue #7): `mkdir DIR && git archive 22a09ab | tar -x -C DIR`."
            if "--before" in results["command"]
            else ""
        ),
        "",
        "## Goals",
        "",
        *_table(["SQLite", "target", "measured", ""], [list(row) for row in goals(results)]),
        "",
        *_table(["PostgreSQL", "target", "measured", ""], [list(row) for row in goals(results, "postgres")]),
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
    out += NOTES
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
