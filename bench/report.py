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
    """(goal, target, measured, verdict) rows of issue 14's figures, at the largest size of ``store``."""
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
        goal: str,
        target: str | None,
        a: float | None,
        b: float | None,
        limit: float,
        unit: str,
        at_least: bool = True,
        digits: int = 2,
    ) -> None:
        value = _ratio(a, b)
        add(goal, target, value, f"{value or 0:.{digits}f}{unit}", limit, at_least)

    peak = _get(top, "import", "peak_mb")
    add(f"2. `import` {n} lines, peak memory", "< 300 MB", peak, _mb(peak), 300, at_least=False)
    rate = _get(top, "import", "rate")
    add(f"2. `import` {n} lines", None, rate, _rate(rate), 0)
    if store == "sqlite":
        naive = results.get("naive") or {}
        ratio(
            f"2. `import` / naive raw path ({naive.get('lines', 0):,} lines: `json.loads`, "
            "`msgpack.packb`, one `executemany`)",
            ">= 0.5",
            _get(naive, "import", "rate"),
            _get(naive, "raw", "rate"),
            0.5,
            "",
        )
        history = results.get("history") or {}
        lengths = sorted(history, key=int)
        if len(lengths) >= 2:
            short, long = history[lengths[0]], history[lengths[-1]]
            for key, label in (("append_seconds", "one `cmv` append"), ("correct_seconds", "one `correct`")):
                ratio(
                    f"3. {label}, participant with {int(lengths[-1]):,} events / with {int(lengths[0]):,}",
                    "<= 1.5x",
                    long.get(key),
                    short.get(key),
                    1.5,
                    "x",
                    at_least=False,
                )
    else:
        ratio("2. `import` / binary COPY of the same rows", None, rate, _get(top, "copy_both", "rate"), 0, "")
    rebuild = _get(top, "rebuild", "rate")
    ratio(
        "4. `rebuild` / raw scan + msgpack",
        ">= 0.4" if store == "postgres" else None,
        rebuild,
        _get(top, "raw_scan", "rate"),
        0.4,
        "",
    )
    add(f"`rebuild` {n} events", None, rebuild, _rate(rebuild), 0)
    verify = _get(top, "verify", "rate")
    if store == "postgres":
        add(f"4. `verify` {n} events", ">= 150,000/s", verify, _rate(verify), 150_000)
    else:
        add(f"`verify` {n} events", None, verify, _rate(verify), 0)
    peak = _get(top, "rebuild", "peak_mb")
    add(
        f"{'5. ' if store == 'sqlite' else ''}`rebuild` {n} events, peak memory",
        "<= 60 MB" if store == "sqlite" else None,
        peak,
        _mb(peak),
        60,
        at_least=False,
    )
    for name in ("status", "endpoints"):
        reads = _reads(top, name)
        slowest = max((seconds for seconds, _, _ in reads), default=None)
        heaviest = max((peak for _, peak, _ in reads), default=None)
        worst = max((share for _, _, share in reads if share is not None), default=None)
        pairs = f"slowest of {len(reads)} (as-of, known-at) pairs, median of runs each"
        add(f"1. `{name}` on {n} events, {pairs}", "< 1 s", slowest, _seconds(slowest), 1, at_least=False)
        add(
            f"1. `{name}` on {n} events, peak memory",
            "< 300 MB",
            heaviest,
            _mb(heaviest),
            300,
            at_least=False,
        )
        add(
            f"1. `{name}` / `rebuild` of the same store, {pairs}",
            "<= 0.05",
            worst,
            f"{worst or 0:.3f}",
            0.05,
            at_least=False,
        )
        if store == "sqlite":
            small = _get(results, "small", name, "median_seconds")
            add(
                f"5. `{name}` on 120 participants, process start included",
                "< 0.5 s",
                small,
                _seconds(small),
                0.5,
                at_least=False,
            )
    if store == "sqlite":
        append = _get(results, "small", "append", "ratio")
        add(
            "5. one `cmv` append / `python -c 'import eventsourcing, click, msgpack'`",
            "<= 3x",
            append,
            f"{append or 0:.2f}x",
            3,
            at_least=False,
        )
    return rows


def _reads(top: Figures, name: str) -> list[tuple[float, float, float | None]]:
    """(seconds, peak MB, share of a rebuild of the same store) of every timed ``name`` at the largest size.

    The plain one on the store of one import, and the read model's cases on the
    store of the same events imported in batches (:mod:`readmodel`).
    """
    found = []
    plain = _get(top, name)
    if plain:
        found.append(
            (plain["seconds"], plain["peak_mb"], _ratio(plain["seconds"], _get(top, "rebuild", "seconds")))
        )
    for case in _get(top, "readmodel_reads", "cases") or []:
        if case.get("command") == name:
            found.append((case["seconds"], case["peak_mb"], case.get("ratio_to_rebuild")))
    return found


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


def _notes(results: Figures) -> list[str]:
    """Where the time goes, for the goals this run finds short (issue 14)."""
    short = {
        goal
        for store in ("sqlite", "postgres")
        for goal, *_, verdict in goals(results, store)
        if "short" in verdict
    }
    out = ["", "## Where the time goes", ""]
    if any("naive raw path" in goal for goal in short):
        naive = results.get("naive") or {}
        per_line = _ratio(_get(naive, "import", "seconds"), naive.get("lines"))
        raw = _ratio(_get(naive, "raw", "seconds"), naive.get("lines"))
        out += [
            f"- **Import against the naive raw path** ({(per_line or 0) * 1e6:.0f} us a line against "
            f"{(raw or 0) * 1e6:.0f} us).  The naive path parses and packs each line once and inserts one "
            "table.  An import also validates every field (msgspec types, patterns, cross-field checks), "
            "checks the protocol rules against each participant's chart, builds the domain events and maps "
            "them to stored events (the library's mapper), hashes each event three times for the seal "
            "(content, leaf, chain) and the Merkle tree, and writes the events, the seal and the read "
            "model: the timelines, and every participant's summary, their standing computed by the rules "
            "on each date it can change (what makes every read a lookup; computed on both cores).  "
            "Streaming adds the staging file: each line is written there and decoded a "
            "second time.  The rules need whole participants, so checking cannot start before every line "
            "is staged, and the move into the ledger (the hash chain) is sequential: 0.5x would need most "
            "of that work gone, not only a second core.",
        ]
    if any("`rebuild` / raw scan" in goal for goal in short):
        out += [
            "- **`rebuild` against a raw scan.**  The raw scan only reads and unpacks.  `rebuild` writes "
            "every event into the read model's timelines, then computes every participant's summary again "
            "(the rules at each date a participant's standing can change, at the end of each batch that "
            "changed it), on both cores: that work is what `status` and `endpoints` no longer do at each "
            "call.",
        ]
    if any("`verify`" in goal for goal in short):
        out += [
            "- **`verify` on PostgreSQL.**  The seal is recomputed in two halves at once (SHA-256 of every "
            "leaf and chain link and the tree's hashes, about 3 microseconds an event in Python), the "
            "signatures from the same rows, while the authorization replay and the read model's check run "
            "beside it in processes of their own; on two cores the read model's check, which computes "
            "every participant's summary again, is the longest of them on a large ledger.",
        ]
    if any(goal.startswith("1.") for goal in short):
        out += [
            "- **Reads.**  A read opens the ledger (process start and imports, a fifth of a second), "
            "checks the read model in one statement, and looks up each participant's summary: one row "
            "and one decode a participant, in time proportional to the participants, not to the events.",
        ]
    if any(goal.startswith("3.") for goal in short):
        out += [
            "- **Write cost against history.**  A write loads the participant's events (one decode each), "
            "and summarises them again from the earliest date it touches: both linear in the history with "
            "a small constant.",
        ]
    if any(goal.startswith("5.") for goal in short):
        out += [
            "- **Small-store commands.**  Process start and imports dominate; the machine was shared "
            "during the run (the baseline `python -c 'import ...'` is in the same table).",
        ]
    return [*out, ""] if len(out) > 3 else []


def _naive(results: Figures) -> list[str]:
    naive = results.get("naive") or {}
    if not naive:
        return []
    rows = [
        ["`trial-ledger import` (process start included)", naive["import"]],
        ["naive raw path: `json.loads`, `msgpack.packb`, one `executemany`", naive["raw"]],
    ]
    return [
        f"## Import against the naive raw path ({naive['lines']:,} lines of a generated trial)",
        "",
        *_table(
            ["what", "time", "rate", "peak"],
            [
                [label, _seconds(r.get("seconds")), _rate(r.get("rate")), _mb(r.get("peak_mb"))]
                for label, r in rows
            ],
        ),
        "",
    ]


def _history(results: Figures) -> list[str]:
    history = results.get("history") or {}
    if not history:
        return []
    rows = [
        [f"{int(n):,}", _seconds(row.get("append_seconds")), _seconds(row.get("correct_seconds"))]
        for n, row in sorted(history.items(), key=lambda item: int(item[0]))
    ]
    return [
        "## Write cost against a participant's history (SQLite, one store)",
        "",
        "Median of runs, process start included; each participant screened, enrolled, infused, then a CMV "
        "result a day (`bench/history.py`); the correction makes a result in the middle of the history "
        "positive, so the participant's summary is computed again from that date on.",
        "",
        *_table(["events of the participant", "one `cmv` append", "one `correct`"], rows),
        "",
    ]


def _known(case: Figures, batches: int | None) -> str:
    """A case's known-at moment, and how many of the store's batches were recorded by then."""
    known = case.get("known_at") or "now"
    after = case.get("batches_known")
    return f"{known} (after {after} of {batches} imports)" if after and batches else str(known)


def _readmodel(results: Figures) -> list[str]:
    """The read model's cases (``bench/readmodel.py``): reads at (as-of, known-at) pairs, write-side cost."""
    figures = results.get("readmodel") or {}
    out: list[str] = []
    for store in ("sqlite", "postgres"):
        kind = figures.get(store) or {}
        sizes = (results.get(store) or {}).get("sizes", {})
        if not kind and sizes:  # measured by run.py on its largest store
            kind = {"reads": _get(sizes[max(sizes, key=int)], "readmodel_reads")}
        cases = _get(kind, "reads", "cases") or []
        if not cases:
            continue
        rows = [
            [
                f"`{case.get('command', '')}`",
                str(case.get("as_of", "")),
                _known(case, _get(kind, "reads", "batches")),
                _seconds(case.get("seconds")),
                _mb(case.get("peak_mb")),
                f"{case.get('ratio_to_rebuild') or 0:.3f}",
            ]
            for case in cases
        ]
        rebuild = _get(kind, "reads", "rebuild") or {}
        out += [
            f"## Reads at (as-of, known-at) pairs, {store} (`bench/readmodel.py`'s cases: the largest "
            "store's events imported in batches)",
            "",
            *_table(["command", "as of", "known at", "time (median of runs)", "peak", "/ rebuild"], rows),
            "",
            f"`rebuild` of the same store: {_seconds(rebuild.get('seconds'))}, {_mb(rebuild.get('peak_mb'))}."
            + (
                f"  Keeping the read model in the write transaction costs {kind['import_cost']:.2f}x "
                f"on an import and {kind.get('append_cost') or 0:.2f}x on one append."
                if kind.get("import_cost")
                else ""
            ),
            "",
        ]
    return out


def render(results: Figures) -> str:
    """The Markdown report."""
    out = [
        "# Performance at scale (issues #7 and 14)",
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
        "![import and rebuild time against store size; write cost against a participant's history]"
        "(scaling.png)",
        "",
        *_naive(results),
        *_history(results),
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
    out += _readmodel(results)
    out += [f"- {note}" for note in results.get("notes", [])]
    out += _notes(results)
    return "\n".join(out) + "\n"


def plot(results: Figures, path: Any) -> None:
    """Import and rebuild time against store size, SQLite and PostgreSQL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(12, 4.5))
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
    ax.set_title("import and rebuild time vs store size")
    history = sorted((results.get("history") or {}).items(), key=lambda item: int(item[0]))
    for key, label, marker in (
        ("append_seconds", "one cmv append", "o"),
        ("correct_seconds", "one correct", "s"),
    ):
        points = [(int(n), row[key]) for n, row in history if row.get(key)]
        if points:
            hx.plot(*zip(*points, strict=True), "-", marker=marker, label=label)
    hx.set_xlabel("events of the participant written to")
    hx.set_ylabel("seconds, process start included (median)")
    hx.set_xscale("log")
    hx.set_ylim(bottom=0)
    hx.grid(True, which="both", alpha=0.3)
    hx.legend()
    hx.set_title("write cost vs the participant's history (SQLite)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
