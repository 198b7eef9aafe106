"""Break the engine on purpose and show that the test and property suites catch each mutation.

Run:  python scripts/mutation_check.py     (exit status 1 if a mutation survives)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mutations import MUTATIONS  # noqa: E402


def main() -> int:
    survived = []
    for name in MUTATIONS:
        env = {**os.environ, "ODECHECK_MUTATION": name, "HYPOTHESIS_PROFILE": "ci"}
        res = subprocess.run([sys.executable, "-m", "pytest", "tests", "properties", "-q", "-x", "-n", "2", "-p",
                              "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True)
        failed = sorted(set(re.findall(r"FAILED (\S+)", res.stdout)))
        summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-200:]
        caught = res.returncode != 0 and failed
        print(f"{name}: {'CAUGHT' if caught else 'SURVIVED'} ({summary})")
        for f in failed[:8]:
            print(f"    {f}")
        if len(failed) > 8:
            print(f"    ... and {len(failed) - 8} more")
        if not caught:
            survived.append(name)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
