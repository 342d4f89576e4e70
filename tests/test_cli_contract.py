"""The command line means what it says, never damages a ledger, and exits with the SPEC's codes (issue 11).

- An explicit global option beats its environment variable wherever it is
  placed (before or after the command name); the environment counts only when
  the option is given nowhere (SPEC section 6).
- No output (``export odm``, ``export sdtm``, ``digest --out``, ``prove
  --out``, ``report --out``, ``demo --jsonl``) replaces the store, a file of
  it, or any other ledger; a bad output folder is exit 2 naming the option.
- Reading commands never create a store.
- Exit 1 means only "verification failed": every other failure is exit 2 or 3
  with one line and no traceback.  A hypothesis test drives every command of
  the click group with generated arguments and environment on real stores.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify
from ledger.domain.protocol import DEFAULT_PROTOCOL
from tests.staff import generated

USER = "nfh.chen"
SCREEN = [
    "screen",
    "--participant",
    "NFH-901",
    "--site",
    "NFH",
    "--effective",
    "2016-03-01",
    "--age-years",
    "38",
    "--sex",
    "F",
    "--refractory-cmv",
    "infection",
    "--consent-date",
    "2016-03-01",
    "--consent-by",
    "participant",
    "--hr",
    "82",
    "--rr",
    "16",
    "--sbp",
    "124",
    "--dbp",
    "78",
]


def invoke(args: list[str], env: dict[str, str | None] | None = None, stdin: str = "") -> Result:
    return CliRunner().invoke(main, args, env=env, input=stdin)


def seal(store: str) -> tuple[int, bytes | None]:
    """The store's size and recomputed root: what must not change when nothing was written."""
    ledger = TrialLedger(store)
    try:
        verdict = verify(ledger)
        assert verdict.ok, verdict.to_json()
        return verdict.size, verdict.root
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated trial in a SQLite store, copied by the tests that change it."""
    folder = tmp_path_factory.mktemp("trial")
    ledger = TrialLedger(str(folder / "trial.db"))
    generated(ledger, 2)
    ledger.close()
    return folder / "trial.db"


@pytest.fixture
def stores(trial: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two real ledgers: ``option.db`` (the trial) and ``environment.db`` (empty)."""
    option, environment = tmp_path / "option.db", tmp_path / "environment.db"
    shutil.copy(trial, option)
    assert invoke(["--store", str(environment), "init"]).exit_code == 0
    yield str(option), str(environment)


# -- an explicit option beats the environment --------------------------------------------------

PLACEMENTS = st.sampled_from(["nowhere", "before", "after", "both"])


def placed(option: str, value: str, placement: str, command: list[str]) -> list[str]:
    before = [option, value] if placement in ("before", "both") else []
    after = [option, value] if placement in ("after", "both") else []
    return [*before, *command, *after]


@settings(max_examples=16, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(placement=PLACEMENTS, env_set=st.booleans())
def test_store_option_beats_the_environment_wherever_placed(
    stores: tuple[str, str], placement: str, env_set: bool
) -> None:
    option, environment = stores
    env = {"TRIAL_LEDGER_STORE": environment if env_set else None}
    result = invoke(placed("--store", option, placement, ["--json", "verify"]), env)
    if placement == "nowhere" and not env_set:
        assert result.exit_code == 2
        assert (
            result.stderr
            == "error: store: no ledger at trial-ledger.db; create one with `trial-ledger init`\n"
        )
        assert not Path("trial-ledger.db").exists()
        return
    assert result.exit_code == 0, result.output
    expected = seal(environment if placement == "nowhere" else option)[0]
    assert json.loads(result.stdout)["size"] == expected


@settings(max_examples=16, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(placement=PLACEMENTS, env_set=st.booleans())
def test_user_option_beats_the_environment_wherever_placed(
    stores: tuple[str, str], placement: str, env_set: bool
) -> None:
    _, store = stores
    ledger = TrialLedger(store, create=False)
    before = ledger.recorder.max_notification_id() or 0
    ledger.close()
    env = {"TRIAL_LEDGER_USER": "nfh.env" if env_set else None}
    args = placed("--user", "nfh.option", placement, ["--store", store, *SCREEN, "--id", f"s{before}"])
    result = invoke(args, env)
    assert result.exit_code in (0, 2), result.output
    ledger = TrialLedger(store, create=False)
    entries = list(ledger.entries())
    ledger.close()
    if result.exit_code == 0:
        # On SQLite, with neither option nor variable, the operating-system user acts (SPEC section 6).
        expected = "nfh.option" if placement != "nowhere" else "nfh.env" if env_set else getpass.getuser()
        assert entries[-1].record.user == expected
    else:  # NFH-901 was screened by an earlier example: one screening per participant
        assert "NFH-901" in result.stderr


@settings(max_examples=16, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(placement=PLACEMENTS, env_set=st.booleans())
def test_protocol_option_beats_the_environment_wherever_placed(
    stores: tuple[str, str], tmp_path: Path, placement: str, env_set: bool
) -> None:
    option, _ = stores
    text = Path(DEFAULT_PROTOCOL).read_text()
    chosen, other = tmp_path / "chosen.toml", tmp_path / "other.toml"
    chosen.write_text(text.replace('study = "NFH-MSC-CMV-2014"', 'study = "CHOSEN-1"', 1))
    other.write_text(text.replace('study = "NFH-MSC-CMV-2014"', 'study = "ENVIRONMENT-1"', 1))
    env = {"TRIAL_LEDGER_PROTOCOL": str(other) if env_set else None}
    result = invoke(placed("--protocol", str(chosen), placement, ["--store", option, "--json", "init"]), env)
    assert result.exit_code == 0, result.output
    expected = {"nowhere": "ENVIRONMENT-1" if env_set else "NFH-MSC-CMV-2014"}.get(placement, "CHOSEN-1")
    assert json.loads(result.stdout)["protocol"] == expected


@pytest.mark.parametrize("placement", ["before", "after"])
def test_json_is_json_wherever_placed(stores: tuple[str, str], placement: str) -> None:
    option, _ = stores
    args = (
        ["--json", "--store", option, "digest"]
        if placement == "before"
        else ["--store", option, "digest", "--json"]
    )
    result = invoke(args)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["size"] == seal(option)[0]


def test_an_empty_store_option_is_refused_not_replaced_by_the_environment(stores: tuple[str, str]) -> None:
    _, environment = stores
    result = invoke(["--store", "", "verify"], {"TRIAL_LEDGER_STORE": environment})
    assert (result.exit_code, result.stderr) == (2, "error: store: must not be empty\n")


def test_an_empty_user_option_is_refused_not_replaced_by_the_operating_system_user(
    stores: tuple[str, str],
) -> None:
    option, _ = stores
    result = invoke(["--store", option, "--user", " ", "lock", "--reason", "x"], {"TRIAL_LEDGER_USER": "dm"})
    assert (result.exit_code, result.stderr) == (2, "error: user: must not be empty\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["status", "--as-of", "2015-02-30"],
            "Invalid value for '--as-of': '2015-02-30' is not a date YYYY-MM-DD",
        ),
        (["--store"], "Option '--store' requires an argument."),
        (["nocommand"], "No such command 'nocommand'."),
        (["export", "sdtm"], "Missing argument 'DIRECTORY'."),
        (["ae", "NFH-001", "--term", "x\udcff"], "--term: not valid UTF-8 text"),
    ],
)
def test_a_mistyped_command_line_is_one_line_naming_what_is_wrong(
    stores: tuple[str, str], args: list[str], expected: str
) -> None:
    """Not click's usage, hint and error: one line, exit 2, nothing stored (issue 11)."""
    option, _ = stores
    before = seal(option)
    result = invoke(["--store", option, "--user", "dm", *args], {})
    assert (result.exit_code, result.stderr) == (2, f"error: {expected}\n")
    assert seal(option) == before


def test_a_huge_value_is_said_cut_short(stores: tuple[str, str], tmp_path: Path) -> None:
    option, _ = stores
    line = tmp_path / "huge.jsonl"
    line.write_text(json.dumps({"type": "x" * 100_000, "participant": "NFH-001"}) + "\n")
    result = invoke(["--store", option, "--user", "dm", "import", str(line)], {})
    assert result.exit_code == 2
    [said] = result.stderr.splitlines()
    assert said.startswith("error: ") and said.endswith(" more characters)") and len(said) < 1_200


# -- outputs never write over a ledger ---------------------------------------------------------

OUTPUTS = {
    "export odm": lambda target: ["export", "odm", target],
    "digest --out": lambda target: ["digest", "--out", target],
    "prove --out": lambda target: ["prove", "--from-size", "0", "--out", target],
    "demo --jsonl": lambda target: ["demo", "--participants", "1", "--jsonl", target],
}
FOLDER_OUTPUTS = {
    "export sdtm": lambda target: ["export", "sdtm", target],
    "report --out": lambda target: ["report", "--out", target],
}
OPTION = {
    "export odm": "file",
    "digest --out": "out",
    "prove --out": "out",
    "demo --jsonl": "jsonl",
    "export sdtm": "directory",
    "report --out": "out",
}


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("command", sorted(OUTPUTS))
@pytest.mark.parametrize("target", ["store", "symlink", "other ledger", "wal", "inside store"])
def test_no_output_replaces_a_ledger(
    stores: tuple[str, str], tmp_path: Path, command: str, target: str
) -> None:
    option, environment = stores
    store = Path(option)
    invoke(["--store", option, "verify"])  # the WAL and shared-memory files exist
    path = {
        "store": store,
        "symlink": tmp_path / "link.xml",
        "other ledger": Path(environment),
        "wal": Path(option + "-wal"),
        "inside store": store / "out.json",
    }[target]
    if target == "symlink":
        path.symlink_to(store)
    # The store's own file may gain read-model rows on opening; its events must not change.
    guarded = Path(environment)
    before, seal_before = _bytes(guarded), seal(option)
    result = invoke(["--store", option, "--user", USER, *OUTPUTS[command](str(path))])
    assert result.exit_code == 2, result.output
    field = OPTION[command]
    expected = {
        "store": f"error: {field}: {path} is the ledger's store; choose another path\n",
        "symlink": f"error: {field}: {path} is the ledger's store; choose another path\n",
        "other ledger": f"error: {field}: {path} is a SQLite database; choose another path\n",
        "wal": f"error: {field}: {path} is the ledger's store; choose another path\n",
        "inside store": f"error: {field}: folder {store} is not a folder\n",
    }[target]
    assert result.stderr == expected
    assert _bytes(guarded) == before
    assert seal(option) == seal_before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", sorted(FOLDER_OUTPUTS))
def test_a_folder_output_holding_a_ledger_under_an_output_name_is_refused(
    stores: tuple[str, str], tmp_path: Path, command: str
) -> None:
    option, environment = stores
    out = tmp_path / "out"
    out.mkdir()
    name = "dm.xpt" if command == "export sdtm" else "index.html"
    shutil.copy(environment, out / name)
    before = _bytes(out / name)
    result = invoke(["--store", option, *FOLDER_OUTPUTS[command](str(out))])
    assert result.exit_code == 2, result.output
    assert (
        result.stderr == f"error: {OPTION[command]}: {out / name} is a SQLite database; choose another path\n"
    )
    assert _bytes(out / name) == before
    assert sorted(p.name for p in out.iterdir()) == [name]


@pytest.mark.parametrize("command", sorted(OUTPUTS | FOLDER_OUTPUTS))
@pytest.mark.parametrize("problem", ["missing folder", "a file, not a folder", "read-only folder"])
def test_a_bad_output_folder_is_exit_2_naming_the_option(
    stores: tuple[str, str], tmp_path: Path, command: str, problem: str
) -> None:
    option, _ = stores
    folder = tmp_path / "folder"
    state = {
        "missing folder": "does not exist",
        "a file, not a folder": "is not a folder",
        "read-only folder": "is not writable",
    }[problem]
    if problem == "a file, not a folder":
        folder.write_text("not a folder")
    elif problem == "read-only folder":
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        if os.access(folder, os.W_OK):  # root writes anyway: then a folder on a read-only mount
            folder = Path("/proc/self")
    target = folder / "sub" / "out" if problem == "missing folder" else folder / "out"
    build = (OUTPUTS | FOLDER_OUTPUTS)[command]
    result = invoke(["--store", option, "--user", USER, *build(str(target))])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {OPTION[command]}: folder {target.parent} {state}\n"
    assert "Traceback" not in result.output


def test_an_existing_export_that_is_not_a_ledger_is_replaced_whole(
    stores: tuple[str, str], tmp_path: Path
) -> None:
    option, _ = stores
    target = tmp_path / "trial.xml"
    target.write_text("an older export")
    result = invoke(["--store", option, "export", "odm", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"<?xml")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trial.xml")] == []


# -- reading never creates a store -------------------------------------------------------------

READS = [
    ["verify"],
    ["digest"],
    ["status"],
    ["endpoints"],
    ["audit"],
    ["signatures"],
    ["coding"],
    ["prove", "--from-size", "0"],
    ["rebuild"],
    ["export", "odm", "out.xml"],
    ["export", "sdtm", "sdtm"],
]


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_reading_a_mistyped_store_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    mistyped = tmp_path / "trail-ledger.db"
    result = invoke(["--store", str(mistyped), *command])
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: store: no ledger at {mistyped}; create one with `trial-ledger init`\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_reading_a_mistyped_postgresql_schema_creates_nothing(pg_url: str) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    result = invoke(["--store", pg_url, "verify"])
    where = pg_url.split("@")[-1]
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: store: no ledger at {where}; create one with `trial-ledger init`\n",
    )
    schema = pg_url.rsplit("=", 1)[1]
    with psycopg.connect(PG_ADMIN_URL) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()
    assert tables == (0,)
    missing = pg_url.rsplit("=", 1)[0] + "=no_such_schema"
    for command in (["verify"], ["init"]):
        result = invoke(["--store", missing, *command])
        assert (result.exit_code, result.stderr) == (
            2,
            "error: store: schema no_such_schema does not exist\n",
        )


# -- exit codes of known crashes ---------------------------------------------------------------


def test_known_crashes_are_one_line_with_the_right_code(stores: tuple[str, str], tmp_path: Path) -> None:
    option, _ = stores
    bad_protocol = tmp_path / "bad.toml"
    bad_protocol.write_text("garbage")
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database at all")
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE visits (id INTEGER)")
    cases: list[tuple[list[str], int, str]] = [
        (
            ["--protocol", str(tmp_path / "none.toml"), "--store", option, "status"],
            2,
            "protocol: cannot read",
        ),
        (["--protocol", str(bad_protocol), "--store", option, "status"], 2, "protocol: protocol file"),
        (["--protocol", str(tmp_path), "--store", option, "status"], 2, "protocol: cannot read"),
        (
            ["--store", "postgresql://postgres@127.0.0.1:1/test", "verify"],
            3,
            "store: the database is unavailable",
        ),
        (["--store", str(tmp_path), "verify"], 2, f"store: {tmp_path} is a directory, not a ledger file"),
        (["--store", str(tmp_path), "init"], 2, f"store: {tmp_path} is a directory, not a ledger file"),
        (["--store", str(not_sqlite), "verify"], 2, f"store: {not_sqlite} is not a SQLite ledger"),
        (["--store", str(not_sqlite), "init"], 2, f"store: {not_sqlite} is not a SQLite ledger"),
        (["--store", str(other), "init"], 2, f"store: {other} is another program's database (tables visits)"),
        (["--store", str(other), "--user", USER, "import", str(not_sqlite)], 2, f"store: {other} is another"),
        (
            ["--store", str(tmp_path / "no" / "x.db"), "init"],
            2,
            f"store: folder {tmp_path / 'no'} does not exist",
        ),
        (
            [
                "--store",
                option,
                "--user",
                USER,
                "correct",
                "--target",
                "NFH-001#1",
                "--reason",
                "r",
                "--changes",
                '{"age_years": ' + "9" * 5000 + "}",
            ],
            2,
            "changes: not a JSON object",
        ),
        (["--store", option, "prove", "--from-size", "9" * 400], 2, "from_size: must be between 0 and"),
        (
            ["--store", option, "prove", "--from-size", "0", "--size", "9" * 400],
            2,
            "size: must be between 0 and",
        ),
    ]
    before = seal(option)
    for args, code, start in cases:
        result = invoke(args)
        assert result.exit_code == code, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), (args, result.stderr)
    for moment in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        for command in (["status"], ["endpoints"], ["audit"], ["export", "odm", "x.xml"]):
            result = invoke(["--store", option, *command, "--known-at", moment])
            assert result.exit_code == 2
            assert (
                f"Invalid value for '--known-at': '{moment}' is outside the calendar once converted to UTC"
                in (result.stderr)
            )
    for participants in ("-5", "0", "9" * 30):
        result = invoke(["--store", option, "demo", "--participants", participants])
        assert result.exit_code == 2
        assert f"Invalid value for '--participants': {participants} is not in the range 1<=x<=100000." in (
            result.stderr
        )
    assert seal(option) == before


# -- every command, generated arguments and environment ----------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*path, name)))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = _commands(main)
# Only these may say "verification failed" (exit 1).
VERIFYING = {("verify",), ("verify-proof",), ("signatures",)}
# These may change the store when they exit 0.
WRITING = {
    ("import",),
    ("lock",),
    ("unlock",),
    ("sign",),
    ("code-ae",),
    ("demo",),
    ("user", "add"),
    ("user", "update"),
    ("user", "deactivate"),
    ("key", "new"),
    *((name,) for name in main.commands if type(main.commands[name]).__name__ == "WriteCommand"),
}


def _options(command: click.Command) -> list[str]:
    ctx = click.Context(command)
    return [opt for p in command.get_params(ctx) if isinstance(p, click.Option) for opt in p.opts]


def _values(place: Path, store: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "",
            "-5",
            "0",
            "1",
            "9" * 300,
            "NFH-001",
            "NFH-001#1",
            "2016-02-30",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "2015-06-30",
            '{"value_iu_ml": 1e999}',
            '{"age_years": ' + "9" * 4500 + "}",
            "[[[[[[[[[[",
            "a\x00b",
            "\x1b[2J",
            "=cmd|' /C calc'!A0",
            "true",
            store,
            store + "-wal",
            str(place),
            str(place / "missing" / "x"),
            str(place / "out"),
            "postgresql://postgres@127.0.0.1:1/test",
        ]
    ) | st.text(max_size=12)


@st.composite
def invocations(
    draw: st.DrawFn, place: Path, store: str
) -> tuple[tuple[str, ...], list[str], dict[str, str | None]]:
    path, command = draw(st.sampled_from(COMMANDS))
    options = _options(command)
    values = _values(place, store)
    tokens: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["option", "option", "value", "flag"]))
        if kind == "option":
            tokens += [draw(st.sampled_from(options)), draw(values)]
        elif kind == "flag":
            tokens.append(draw(st.sampled_from(options)))
        else:
            tokens.append(draw(values))
    before = draw(st.sampled_from([[], ["--store", store], ["--json"], ["--store", draw(values)]]))
    env = {
        "TRIAL_LEDGER_STORE": draw(st.sampled_from([None, store, str(place), str(place / "typo.db")])),
        "TRIAL_LEDGER_USER": draw(st.sampled_from([None, USER, "bad user", "nfh.nurse"])),
        "TRIAL_LEDGER_PROTOCOL": draw(st.sampled_from([None, str(DEFAULT_PROTOCOL), str(place)])),
        "HOME": str(place),
    }
    return path, [*before, *path, *tokens], env


def test_every_command_exits_with_an_allowed_code_and_no_traceback(trial: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "fuzz.db")
    shutil.copy(trial, store)
    place = tmp_path / "work"
    place.mkdir()
    seen: set[tuple[str, ...]] = set()

    @settings(max_examples=150, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(data=st.data())
    def drive(data: st.DataObject) -> None:
        path, args, env = data.draw(invocations(place, store))
        seen.add(path)
        before = seal(store)
        result = invoke(args, env)
        allowed = {0, 1, 2, 3} if path in VERIFYING else {0, 2, 3}
        assert result.exit_code in allowed, (args, env, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "Traceback" not in result.output
        if result.exit_code != 0 or path not in WRITING:
            assert seal(store) == before, (args, env)

    drive()
    assert len(seen) > len(COMMANDS) // 2


def test_a_further_check_of_verify_is_one_more_finding(stores: tuple[str, str]) -> None:
    """The verdict composes named checks (issue 13): one that finds a problem fails it with its first."""
    from ledger.application.verification import Finding, Mismatch, verify_ledger

    option, _ = stores
    problem = Finding("read_model", Mismatch(None, "NFH-001", "status differs"), {"first": "NFH-001"}, ("x",))
    ledger = TrialLedger(option)
    try:
        clean = verify_ledger(ledger, checks=[lambda _ledger: None])
        found = verify_ledger(ledger, checks=[lambda _ledger: problem])
    finally:
        ledger.close()
    assert clean.ok and clean.findings == ()
    assert (found.ok, found.sealed, found.findings) == (False, True, (problem,))
    assert found.to_json() == {
        "ok": False,
        "size": clean.size,
        "first_bad": {"position": None, "event_id": "NFH-001", "problem": "status differs"},
        "read_model": {"first": "NFH-001"},
    }


def test_commands_on_the_embedded_store_never_load_the_postgresql_driver(tmp_path: Path) -> None:
    """psycopg costs a fifth of a second to import: only a ``postgresql://`` store loads it."""
    import subprocess
    import sys

    store = str(tmp_path / "trial-ledger.db")
    generated(TrialLedger(store), 3)
    script = (
        "import sys, cli\n"
        "for args in (['init'], ['status'], ['--json', 'endpoints'], ['verify']):\n"
        "    try:\n"
        f"        cli.main(['--store', {store!r}, '--user', 'dm', *args])\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, (args, done.code)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'psycopg'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.dates(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_json_output_is_what_the_standard_encoder_indents(data: object) -> None:
    """``--json`` prints exactly ``json.dumps(data, indent=2, default=str)``, escapes and numbers alike."""
    from cli import json_text

    assert json_text(data) == json.dumps(data, indent=2, default=str)
