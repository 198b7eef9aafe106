"""README's two fresh-machine commands and CI stay in step."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _readme_commands() -> list[str]:
    return re.findall(r"^```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.M)


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci_lines


def test_readme_starts_with_install_and_verify():
    first = _readme_commands()[0]
    assert "pip install torch==2.13.0" in first and first.endswith("odecheck verify")


@pytest.mark.slow
def test_every_python_snippet_of_the_readme_runs_as_written():
    # each ```python block, in a fresh namespace, as a reader would paste it (the odecheck.nn one used x and
    # labels it never defined)
    import torch

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    torch.set_num_threads(1)
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": f"readme_{i}"})
        except Exception as e:  # noqa: BLE001 - the block's error is the test's answer
            pytest.fail(f"README python block {i} failed: {type(e).__name__}: {e}")
