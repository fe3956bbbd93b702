"""A run stopped by ``kill`` or ``timeout`` ends the way Ctrl-C ends it: records closed, saved."""

from __future__ import annotations

import os
import signal


def treat_sigterm_as_sigint() -> None:
    """Re-deliver SIGTERM as SIGINT, so the one Ctrl-C path (asyncio's runner cancelling the main
    task, ``finishing`` marking the record "cancelled") handles both."""
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
