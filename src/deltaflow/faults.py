"""Named crash points for the reliability harness (``reliability/``).

``DELTAFLOW_CRASH_AT=<point>`` makes the process kill itself with SIGKILL the first time
it reaches that point, as a power cut would: no cleanup, no finally blocks. Unset (the
normal case), a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("mid_read", "mid_load", "after_load_before_commit", "after_commit")


def crash_point(name: str) -> None:
    if os.environ.get("DELTAFLOW_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
