"""The CLI's own error: a command-line mistake (exit status 2, one line). Its own module so that every
sub-command can raise it without importing :mod:`fastsam_onnx.cli`, which imports the sub-commands."""

from __future__ import annotations


class UsageError(Exception):
    """A command-line mistake: reported as one line with exit status 2."""
