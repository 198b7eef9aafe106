"""The one progress protocol of the library's long calls: each reports :class:`Progress` events to a
``progress`` callable (a *meter*) and never draws anything itself; the command line's meters live in
``odecheck.progress``.

Who reports what (``task``; ``done`` of ``total``; ``item``; ``result`` when ``stage`` is "done"):

- ``verify``: claims; "start" and "advance" (a fraction of the claim) and "done" per claim id, with
  ``result`` = {"verdict": its JSON, "reused": bool};
- ``train`` (``runner.run``): steps; "advance" per step, ``result`` = the members' losses (R,);
- ``sweep`` and ``reproduce``: cells; "done" per cell (``item``: the cell, ``result``: its rows), the cells
  found finished on disk first;
- ``analyze``: paths; "start" per path (``item``: "file: name");
- ``transfer`` (``parametrizations.final_losses``): (depth, learning rate) cells, "done" per cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from odecheck.core.threads import check

Stage = Literal["start", "advance", "done"]


@dataclass(frozen=True)
class Progress:
    task: str
    done: float
    total: float | None
    item: Any = ""
    stage: Stage = "advance"
    result: Any = None


Meter = Callable[[Progress], None]


def report(meter: Meter | None, *args, **kwargs) -> None:
    """Send ``Progress(*args, **kwargs)`` to ``meter`` when there is one."""
    check()  # long calls report often: the thread policy re-checks the free cores here (rate-limited)
    if meter is not None:
        meter(Progress(*args, **kwargs))


__all__ = ["Meter", "Progress", "Stage", "report"]
