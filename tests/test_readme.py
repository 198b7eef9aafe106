"""README's two fresh-machine commands and CI stay in step."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"^```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.M)


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci_lines


def test_readme_starts_with_install_and_verify():
    first = _readme_commands()[0]
    assert "pip install torch==2.13.0" in first and first.endswith("odecheck verify")
