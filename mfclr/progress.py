"""One switch for progress bars: shown on an interactive terminal unless --quiet.

Logs that are not a terminal (CI, `ray job logs`, files) get the per-epoch log lines instead of
carriage-return bar updates.
"""

from __future__ import annotations

import os
import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled(requested: bool = True) -> bool:
    """Whether a bar asked for (`requested`) should be drawn. MFCLR_PROGRESS=always forces it."""
    if not requested or _quiet:
        return False
    return os.environ.get("MFCLR_PROGRESS") == "always" or sys.stderr.isatty()
