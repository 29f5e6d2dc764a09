"""The object tree of a checkpoint read by :func:`fastsam_onnx.export.checkpoint.read_checkpoint`: the inert
:class:`Record` of a pickled object and :func:`state_dict` of a module record tree (both re-exported by
``fastsam_onnx.export.checkpoint``, where consumers import them)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..errors import BadModelError

__all__ = ["Record", "state_dict"]

MAX_DEPTH = 1000  # module trees deeper than this are refused by state_dict()


class Record:
    """An object of the pickle, inert: ``module`` and ``name`` of its class as the file names them (e.g.
    ``"ultralytics.nn.modules.conv"``, ``"Conv"``), ``args`` (the arguments the pickle would have called the class
    with) and ``state`` (what it would have set on the object: for an ``nn.Module`` its ``__dict__``, with
    ``_parameters``, ``_buffers`` and ``_modules`` dicts; for a TorchScript module its attributes, plus the names in
    ``__parameters__`` and ``__buffers__`` where the archive's code declares them).

    Attribute access reads the state as ``nn.Module`` does: ``state[key]``, else ``_parameters``, ``_buffers``,
    ``_modules``; ``record[i]`` indexes ``_modules`` in order (``nn.Sequential`` / ``nn.ModuleList``). The names of
    the Record's own fields and methods (``module``, ``name``, ``args``, ``state``, ``children``, ``get``) shadow
    attributes of the object: read those with ``record.get("args")`` (an ultralytics model's ``args``)."""

    __slots__ = ("module", "name", "args", "state")

    def __init__(self, module: str, name: str, args: tuple = (), state: Any = None):
        self.module, self.name, self.args = module, name, tuple(args)
        self.state = {} if state is None else state

    def _lookup(self, key: str) -> Any:
        state = self.state if isinstance(self.state, dict) else {}
        if key in state:
            return state[key]
        for part in ("_parameters", "_buffers", "_modules"):
            table = state.get(part)
            if isinstance(table, dict) and key in table:
                return table[key]
        raise AttributeError(f"{self.name} record has no attribute {key!r}")

    def get(self, key: str, default: Any = None) -> Any:
        """The object's attribute ``key`` (as attribute access reads it), or ``default``."""
        try:
            return self._lookup(key)
        except AttributeError:
            return default

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self._lookup(key)

    def __getitem__(self, i: int) -> Any:
        return list(self.children().values())[i]

    def __len__(self) -> int:
        return len(self.children())

    def children(self) -> dict[str, Any]:
        """The submodules (``_modules`` of an ``nn.Module`` record; the Record attributes of a TorchScript one)."""
        state = self.state if isinstance(self.state, dict) else {}
        if isinstance(state.get("_modules"), dict):
            return {k: v for k, v in state["_modules"].items() if v is not None}
        return {k: v for k, v in state.items() if isinstance(v, Record)}

    def __repr__(self) -> str:
        return f"Record({self.module}.{self.name})"


def _tensors(obj: Any) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) of the parameters and buffers of one record (not of its children), as ``state_dict`` has them:
    an ``nn.Module``'s ``_parameters`` and persistent ``_buffers``; a TorchScript module's declared
    ``__parameters__`` and ``__buffers__``, else all its array attributes."""
    state = obj.state if isinstance(obj.state, dict) else {}
    if "_parameters" in state or "_buffers" in state:
        skip = state.get("_non_persistent_buffers_set") or set()
        for part in ("_parameters", "_buffers"):
            for k, v in (state.get(part) or {}).items():
                if isinstance(v, np.ndarray) and not (part == "_buffers" and k in skip):
                    yield k, v
    elif isinstance(state.get("__parameters__"), list) or isinstance(state.get("__buffers__"), list):
        for k in [*(state.get("__parameters__") or []), *(state.get("__buffers__") or [])]:
            if isinstance(state.get(k), np.ndarray):
                yield k, state[k]
    else:
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                yield k, v


def state_dict(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The ``state_dict`` of a module record tree, as ``torch.nn.Module.state_dict()`` names it
    (``"model.0.conv.weight"``, ``"visual.conv1.weight"``, ...): arrays as stored (fp16 stays fp16). A plain dict
    of arrays (a saved state dict) is returned as it is."""
    if isinstance(obj, dict):
        return {prefix + k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, Record):
        _collect(obj, prefix, out, [])
    return out


def _collect(obj: Record, prefix: str, out: dict[str, np.ndarray], ancestors: list[int]) -> None:
    if len(ancestors) > MAX_DEPTH:
        raise BadModelError(f"module tree deeper than {MAX_DEPTH} levels")
    for k, v in _tensors(obj):
        out[prefix + k] = v
    ancestors.append(id(obj))
    for k, child in obj.children().items():
        if isinstance(child, Record) and id(child) not in ancestors:  # a module holding its parent: not followed
            _collect(child, f"{prefix}{k}.", out, ancestors)
    ancestors.pop()
