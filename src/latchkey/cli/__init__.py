"""The ``latchkey`` command: it only translates argv into service calls."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..core.errors import LatchkeyError
from .common import CommandError
from .parser import build_parser

__all__ = ["CommandError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (CommandError, LatchkeyError) as exc:
        message = exc.description if isinstance(exc, LatchkeyError) else str(exc)
        print(f"latchkey: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `latchkey audit | head`: the reader left. Point stdout at devnull so that the
        # interpreter's final flush does not fail again (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # an operator gets one line, never a traceback
        lines = str(exc).strip().splitlines()
        detail = f": {lines[0][:200]}" if lines else ""
        print(f"latchkey: failed ({type(exc).__name__}){detail}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
