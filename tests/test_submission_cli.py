"""The command line of issue 15: code-ae, coding, export sdtm --format with its conformance table."""

from __future__ import annotations

import json
from pathlib import Path

import pyreadstat
from click.testing import CliRunner

from cli import main
from ledger.application.trial_ledger import TrialLedger
from tests import lines as L
from tests.staff import add_user, staffed, store

CODING = [
    "--participant", "NFH-001", "--ae-id", "AE-1", "--dictionary", "Test Dictionary 2.0",
    "--llt-code", "11000001", "--llt", "Feverish", "--pt-code", "11000002", "--pt", "Fever",
    "--hlt-code", "11000003", "--hlt", "Fevers", "--hlgt-code", "11000004", "--hlgt", "Body temperature",
    "--soc-code", "11000005", "--soc", "General conditions",
]  # fmt: skip


def run(url: str, *args: str, user: str = "coder.li") -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", url, "--user", user, *args])
    return result.exit_code, result.stdout, result.stderr


def trial(tmp_path: Path) -> str:
    url = str(tmp_path / "t.db")
    store(TrialLedger(url), [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="ae1")])
    return url


def test_code_ae_and_coding_on_the_command_line(tmp_path: Path) -> None:
    url = trial(tmp_path)
    code, out, _ = run(url, "--json", "coding")
    assert code == 0
    assert json.loads(out)["uncoded"] == [
        {
            "participant": "NFH-001",
            "ae_id": "AE-1",
            "term": "Fever",
            "onset": "2014-01-12",
            "reason": "not coded",
        }
    ]
    code, out, _ = run(url, "coding")
    assert code == 0 and "Adverse events to code as known at" in out and "Fever" in out
    code, out, err = run(url, "--json", "code-ae", *CODING)
    assert code == 0, err
    coded = json.loads(out)
    assert (coded["participant"], coded["ae_id"], coded["verbatim"], coded["pt_code"], coded["soc"]) == (
        "NFH-001", "AE-1", "Fever", 11000002, "General conditions",
    )  # fmt: skip
    assert coded["event"].startswith("NFH-001#") and (coded["user"], coded["replaced"]) == ("coder.li", None)
    assert json.loads(run(url, "--json", "coding")[1])["uncoded"] == []
    code, out, _ = run(url, "code-ae", *CODING[:-2], "--soc", "Other conditions")
    assert code == 0 and out.startswith("recoded NFH-001 AE-1 (Fever) in Test Dictionary 2.0")
    code, out, _ = run(url, "--json", "audit", "NFH-001")
    codings = [row for row in json.loads(out)["entries"] if row["kind"] == "coding"]
    assert codings[1]["changes"] == [{"field": "soc", "old": "General conditions", "new": "Other conditions"}]
    code, out, _ = run(url, "coding")
    assert code == 0 and out.startswith("no adverse event to code as known at ")


def test_code_ae_bad_input_is_exit_2_naming_the_field_and_refusals_exit_3(tmp_path: Path) -> None:
    url = trial(tmp_path)
    code, out, err = run(url, "code-ae", *[a if a != "AE-1" else "AE-7" for a in CODING])
    assert (code, out) == (2, "")
    assert err.strip() == (
        "error: NFH-001: ae_id: no adverse event AE-7 is reported (and not voided)"
        " (rule coding_of_a_reported_ae)"
    )
    code, _, err = run(url, "code-ae", *[a if a != "11000005" else "soc" for a in CODING])
    assert code == 2 and "--soc-code" in err and "Traceback" not in err
    ledger = TrialLedger(url)
    staffed(ledger, tmp_path)
    add_user(ledger, tmp_path, "coder.li", "coder")
    code, _, err = run(url, "code-ae", *CODING, user="nfh.nurse")
    assert code == 3 and "nfh.nurse (site_staff) may not code adverse events" in err
    assert run(url, "code-ae", *CODING)[0] == 0


def test_export_sdtm_writes_transport_files_by_default_and_ends_with_the_conformance_table(
    tmp_path: Path,
) -> None:
    url = trial(tmp_path)
    out = tmp_path / "sdtm"
    code, text, err = run(url, "export", "sdtm", str(out), "--as-of", "2014-02-01")
    assert code == 0, err
    written = "ae.xpt define.xml dm.xpt ds.xpt ex.xpt export.json lb.xpt suppae.xpt suppdm.xpt"
    assert sorted(p.name for p in out.iterdir()) == written.split()
    assert "CDISC conformance: 1 error(s)" in text and "CG0014" in text and "AEDECOD" in text
    code, text, _ = run(
        url, "--json", "export", "sdtm", str(tmp_path / "both"), "--format", "both", "--as-of", "2014-02-01"
    )
    summary = json.loads(text)
    assert code == 0 and summary["format"] == "both"
    assert (
        summary["conformance"]["errors"] == 1
        and summary["conformance"]["findings"][0]["variable"] == "AEDECOD"
    )
    frame, _ = pyreadstat.read_xport(tmp_path / "both" / "ae.xpt")
    assert frame["AETERM"].tolist() == ["Fever"] and (tmp_path / "both" / "ae.csv").exists()
    run(url, "code-ae", *CODING)
    code, text, _ = run(
        url, "--json", "export", "sdtm", str(tmp_path / "csv"), "--format", "csv", "--as-of", "2014-02-01"
    )
    summary = json.loads(text)
    assert summary["conformance"]["errors"] == 0 and not list((tmp_path / "csv").glob("*.xpt"))
    code, _, err = run(url, "export", "sdtm", str(tmp_path / "bad"), "--format", "sas7bdat")
    assert code == 2 and "--format" in err and not (tmp_path / "bad").exists()
