"""The ``fastsam-onnx`` command: one module per sub-command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import FastSAMError
from . import bench, doctor, export, fetch, segment

COMMANDS = {"segment": segment, "export": export, "bench": bench, "doctor": doctor, "fetch": fetch}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsam-onnx", description="FastSAM on ONNX Runtime, without PyTorch.")
    parser.add_argument("--version", action="version", version=f"fastsam-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


class UsageError(Exception):
    """A command-line mistake: reported as one line with exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 2 bad input, 1 unexpected failure)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (FastSAMError, UsageError) as e:
        print(f"fastsam-onnx {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
