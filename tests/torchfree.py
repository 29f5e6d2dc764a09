"""Run Python code in a child process in which importing torch, torchvision, ultralytics or clip fails."""

from __future__ import annotations

import json
import subprocess
import sys

BLOCKED = ("torch", "torchvision", "ultralytics", "clip")

def blocker_source(blocked: tuple[str, ...] = BLOCKED) -> str:
    """Python source that makes importing any of ``blocked`` (top-level names) fail and records the attempts
    in ``_attempts``; for ``python -c`` preludes and for a ``sitecustomize.py`` that reaches child processes."""
    return r"""
import importlib.abc, json, sys
_BLOCKED = %r
_attempts = []

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            _attempts.append(name)
            raise ImportError("blocked by test: " + name)
        return None

sys.meta_path.insert(0, _Block())
""" % (tuple(blocked),)


_PRELUDE = blocker_source() + r"""
def report(**values):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)
    print(json.dumps({**values, "loaded": loaded, "attempts": _attempts}))
"""


def run_blocked(code: str, *args: str, timeout: float = 300) -> dict:
    """Run ``code`` (which ends by calling ``report(**values)``) with the heavy imports blocked; returns the
    reported dict, with ``loaded`` (blocked modules found in sys.modules) and ``attempts`` (imports tried)."""
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
