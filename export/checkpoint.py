"""PyTorch checkpoints read without PyTorch and without running anything they name.

The object tree of a checkpoint is given back with Python containers as they are, tensors as numpy arrays,
and every other pickled object as an inert :class:`Record` (its class's module and name, its constructor
arguments and its state). Nothing named by the file is imported or called.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

__all__ = ["Record", "state_dict"]


class Record:
    """An object of the pickle, inert: ``module`` and ``name`` of its class as the file names them (e.g.
    ``"ultralytics.nn.modules.conv"``, ``"Conv"``), ``args`` (the arguments the pickle would have called the class
    with) and ``state`` (what it would have set on the object: for an ``nn.Module`` its ``__dict__``, with
    ``_parameters``, ``_buffers`` and ``_modules`` dicts; for a TorchScript module its attributes).

    Attribute access reads the state as ``nn.Module`` does: ``state[key]``, else ``_parameters``, ``_buffers``,
    ``_modules``; ``record[i]`` indexes ``_modules`` in order (``nn.Sequential`` / ``nn.ModuleList``)."""

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
    """(name, array) of the parameters and buffers of one record (not of its children)."""
    state = obj.state if isinstance(obj.state, dict) else {}
    if "_parameters" in state or "_buffers" in state:
        for part in ("_parameters", "_buffers"):
            for k, v in (state.get(part) or {}).items():
                if isinstance(v, np.ndarray):
                    yield k, v
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
    if not isinstance(obj, Record):
        return out
    for k, v in _tensors(obj):
        out[prefix + k] = v
    for k, child in obj.children().items():
        out.update(state_dict(child, f"{prefix}{k}."))
    return out
