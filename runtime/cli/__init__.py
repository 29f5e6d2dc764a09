"""The ``fastsam-onnx`` command: one module per sub-command.

Exit statuses: 0 success; 2 a mistake the user can fix (a :class:`~fastsam_onnx.errors.FastSAMError`,
a :class:`UsageError`, a missing extra, an :class:`OSError` such as a permission denied or a full disk),
reported as one sanitized line; 1 an unexpected internal error (one line plus a hint to rerun with
``--debug``); 130 interrupted. ``--debug`` (anywhere on the command line) or ``FASTSAM_ONNX_DEBUG=1``
prints the full traceback as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Sequence

from .. import __version__
from ..errors import FastSAMError
from ..progress import clean
from . import bench, doctor, export, fetch, segment
from . import serve  # FastAPI/uvicorn only inside serve.run()
from . import evaluate  # pycocotools only inside evaluate.run()
from .extras import extra_of
from .usage import UsageError

COMMANDS = {"segment": segment, "export": export, "bench": bench, "doctor": doctor, "fetch": fetch, "serve": serve, "evaluate": evaluate}
_DEBUG_HELP = "print the full traceback of an error (also: FASTSAM_ONNX_DEBUG=1)"


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every (nested) sub-command parser too, so it works after the sub-command."""
    for action in parser._actions:  # argparse keeps sub-parsers here; stable since Python 3.2
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if "--debug" not in child._option_string_actions:
                    child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
                _add_debug_flag(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsam-onnx", description="FastSAM on ONNX Runtime, without PyTorch.")
    parser.add_argument("--version", action="version", version=f"fastsam-onnx {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    _add_debug_flag(parser)
    return parser


def debug_enabled() -> bool:
    """True when ``$FASTSAM_ONNX_DEBUG`` is 1/true/yes/on."""
    return os.environ.get("FASTSAM_ONNX_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def describe_os_error(e: OSError) -> str:
    """``PATH: reason`` for an OSError (``Permission denied``, ``No space left on device`` ...)."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is not None and e.filename2 is not None:
        return f"{os.fsdecode(e.filename)} -> {os.fsdecode(e.filename2)}: {reason}"
    if e.filename is not None:
        return f"{os.fsdecode(e.filename)}: {reason}"
    return reason


def _quiet_opencv() -> None:
    """Silence OpenCV's own log lines (decoder warnings) in this process; the library leaves them alone."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of the package (fallbacks, unverified bundles, shadowed zoo names) as one clean CLI line."""
    print(f"fastsam-onnx: warning: {clean(message)}", file=file or sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 2 bad input, 1 unexpected failure, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or debug_enabled()
    if not debug:  # OpenCV logs its own lines for every bad file; the CLI reports each failure itself
        _quiet_opencv()
    prefix = f"fastsam-onnx {clean(args.command)}"

    def report(line: str) -> None:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(f"{prefix}: {clean(line)}", file=sys.stderr, flush=True)

    def internal(e: BaseException) -> int:  # a bug: one line, the traceback with --debug
        report(f"internal error: {type(e).__name__}: {e}")
        if not debug:
            print(f"{prefix}: run with --debug (or FASTSAM_ONNX_DEBUG=1) for the traceback", file=sys.stderr)
        return 1

    shown = warnings.showwarning
    if not debug:  # package warnings as clean lines, without "<frozen runpy>:88:" locations; restored after
        warnings.showwarning = _show_warning
    try:
        return int(args.run(args) or 0)
    except (FastSAMError, UsageError) as e:
        report(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fastsam-onnx fetch --list | head`: the reader went away; nothing to report
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except ModuleNotFoundError as e:  # an optional dependency that a `require` check did not catch in time
        extra = extra_of(e.name)
        if extra is None:
            return internal(e)
        report(f"error: this needs the [{extra}] extra (no module {e.name!r}): pip install 'fastsam-onnx[{extra}]'")
        return 2
    except OSError as e:  # permission denied, disk full, a directory where a file should be ...
        report(f"error: {describe_os_error(e)}")
        return 2
    except Exception as e:
        return internal(e)
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
