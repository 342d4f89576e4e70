"""Every command of the README's tour works as printed (issue: the main job)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_commands() -> list[str]:
    """The shell lines of the code blocks under "A tour for each user"."""
    text = README.read_text(encoding="utf-8")
    tour = text.split("## A tour for each user", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", tour, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_tour_runs_as_printed_after_the_demo(tmp_path: Path) -> None:
    commands = tour_commands()
    assert len(commands) >= 15
    bin_dir = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAL_LEDGER_")} | {
        "PATH": bin_dir + os.pathsep + os.environ["PATH"]
    }
    script = "set -e\ntrial-ledger demo > /dev/null\n" + "\n".join(
        f"echo '$ {index}'\n{command}" for index, command in enumerate(commands)
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    ran = re.findall(r"^\$ (\d+)$", done.stdout, flags=re.M)
    failed_at = commands[int(ran[-1])] if ran else "trial-ledger demo"
    assert done.returncode == 0, f"failed: {failed_at}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert len(ran) == len(commands)
    assert (tmp_path / "report" / "index.html").exists()
    assert "ok" in done.stdout.lower()
