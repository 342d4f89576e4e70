"""A store made by v0.1.0 reads back with identical output (issue 11: what was accepted stays readable).

``tests/fixtures/v0.1.0/store.db`` was made by ``make.sh`` with the code of
v0.1.0; ``golden/`` holds what that version printed.  Every later version must
print the same, byte for byte; only the moment an export was made may differ.
The committed store is never opened in place: reads may write the read model.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from click.testing import CliRunner

from cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "v0.1.0"
GOLDEN = FIXTURE / "golden"
AS_OF = ["--as-of", "2017-01-01", "--known-at", "2030-01-01T00:00:00Z"]
KNOWN_AT = ["--known-at", "2030-01-01T00:00:00Z"]
# When an export was made: ODM's FileOID suffix and CreationDateTime, SDTM's "created".
_CREATED = (
    (re.compile(r'(FileOID="[^"]*\.)\d{8}T\d{6}Z"'), r'\1CREATED"'),
    (re.compile(r'CreationDateTime="[^"]*"'), 'CreationDateTime="CREATED"'),
    (re.compile(r'"created": "[^"]*"'), '"created": "CREATED"'),
)


def _created_normalised(text: str) -> str:
    for pattern, replacement in _CREATED:
        text = pattern.sub(replacement, text)
    return text


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "store.db"
    shutil.copyfile(FIXTURE / "store.db", copy)
    monkeypatch.chdir(tmp_path)
    for name in ("TRIAL_LEDGER_STORE", "TRIAL_LEDGER_USER", "TRIAL_LEDGER_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    return copy


def _run(store: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--store", str(store), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("golden", "command"),
    [
        ("status.json", ["status", *AS_OF]),
        ("endpoints.json", ["endpoints", *AS_OF]),
        ("audit.json", ["audit"]),
        ("verify.json", ["verify"]),
        ("digest.json", ["digest"]),
        ("signatures.json", ["signatures"]),
    ],
)
def test_read_commands_print_what_v0_1_0_printed(store: Path, golden: str, command: list[str]) -> None:
    assert _run(store, *command) == (GOLDEN / golden).read_text()


def test_odm_export_is_what_v0_1_0_exported(store: Path) -> None:
    _run(store, "export", "odm", "odm.xml", *KNOWN_AT)
    exported = (store.parent / "odm.xml").read_text()
    assert _created_normalised(exported) == _created_normalised((GOLDEN / "odm.xml").read_text())


def test_sdtm_export_is_what_v0_1_0_exported(store: Path) -> None:
    """The text files of ``export sdtm --format both`` are the golden ones; each ``.xpt`` reads as its CSV.

    The golden SDTM files changed once, deliberately, with issue 15 (SDTMIG 3.4 datasets,
    SAS XPORT, define.xml, conformance): the events they come from did not.
    """
    (store.parent / "golden").mkdir()
    printed = _run(store, "export", "sdtm", "golden/sdtm", "--format", "both", *AS_OF)
    assert _created_normalised(printed) == _created_normalised((GOLDEN / "sdtm" / "export.json").read_text())
    written = store.parent / "golden" / "sdtm"
    names = sorted(p.name for p in (GOLDEN / "sdtm").iterdir())
    assert sorted(p.name for p in written.iterdir() if p.suffix != ".xpt") == names
    for name in names:
        expected = _created_normalised((GOLDEN / "sdtm" / name).read_text())
        assert _created_normalised((written / name).read_text()) == expected, name
    for transport in written.glob("*.xpt"):
        frame, _ = pyreadstat.read_xport(transport)
        golden = pd.read_csv(GOLDEN / "sdtm" / f"{transport.stem}.csv", dtype=str, keep_default_na=False)
        numbers = frame.select_dtypes("number").columns
        assert frame.drop(columns=numbers).equals(golden.drop(columns=numbers)), transport.name
        assert (frame[numbers].fillna(-1) == golden[numbers].replace("", "-1").astype(float)).all().all()
