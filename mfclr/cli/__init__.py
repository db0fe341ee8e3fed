"""`mfclr ...`: parse (parser.py), dispatch (commands.py). Errors the user can fix print one
line and exit 2."""

from __future__ import annotations

import logging
import sys

from mfclr import signals
from mfclr.cli.commands import COMMANDS, interrupted_message
from mfclr.cli.parser import build_parser
from mfclr.errors import MfclrError
from mfclr.malloc import keep_freed_memory
from mfclr.progress import set_quiet

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A process started in the background by a non-interactive shell (or by a supervisor) can
    # inherit SIGINT ignored; Ctrl-C, SIGTERM and `ray job stop` must still stop at a checkpoint.
    signals.install()
    keep_freed_memory()  # what `make` exports, for an `mfclr` started by hand (mfclr/malloc.py)
    set_quiet(args.quiet)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        COMMANDS[args.command](args)
    except (MfclrError, FloatingPointError) as err:  # the loop's NaN loss is the user's to fix
        print(f"mfclr: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a filesystem failure no check caught: still one line
        where = f" '{err.filename}'" if err.filename else ""
        print(
            f"mfclr: error: {err.strerror or err}{where}; check the path, its permissions and "
            "the free space",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"mfclr: {interrupted_message(args)}", file=sys.stderr)
        return 130
    return 0
