"""The restricted unpickler behind :func:`fastsam_onnx.export.checkpoint.read_checkpoint`.

No callable named by the file is imported or called. ``find_class`` gives, for a global the file names, either one of
our own implementations (tensor rebuilds, ``OrderedDict``, ``torch.Size``, numpy scalars, ...: :data:`IMPLEMENTATIONS`)
or an inert :class:`Global`. The opcodes that call something are re-implemented:

* REDUCE (and INST / OBJ with arguments), which ``torch.load`` runs as ``callable(*args)``: runs our implementation;
  makes a :class:`~fastsam_onnx.export.checkpoint.Record` for a :data:`VALUE_CLASSES` class, or for a data class
  called with no arguments whose name ends in ``Namespace`` (ultralytics' ``IterableSimpleNamespace``);
* NEWOBJ / NEWOBJ_EX (and INST / OBJ without arguments), which ``torch.load`` runs as ``cls.__new__(cls, *args)``
  (no ``__init__``): a Record for a data class;
* anything else is refused: ``BadModelError("... would call os.system when loaded with torch.load: refused")``.

A *data class* is one of :data:`VALUE_CLASSES`, or a name that is a class by convention (``^_*[A-Z]\\w*$``) in a
module of :data:`DATA_MODULES` (``torch.nn``, ``ultralytics``, TorchScript's ``__torch__``, ``clip``, or a submodule
of one): the module classes of checkpoints, rebuilt by ``torch.load`` without running their code. Functions of those
modules, classes of every other module (``subprocess.Popen``, ``types.FunctionType``) and Records are no data classes.
BUILD sets a Record's state and never calls ``__setstate__``; APPEND(S), SETITEM(S) and ADDITEMS only fill real lists,
dicts and sets; EXT codes and persistent ids other than ``('storage', <torch storage type>, key, location, numel)``
are refused.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
from typing import Any, Callable

import numpy as np

from ..errors import BadModelError
from .record import Record

DATA_MODULES = ("torch.nn", "torch.ao.nn", "ultralytics", "__torch__", "clip")
VALUE_CLASSES = {("pathlib", n) for n in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
                                          "PureWindowsPath")}
VALUE_CLASSES |= {("types", "SimpleNamespace"), ("argparse", "Namespace")}
VALUE_CLASSES |= {("datetime", n) for n in ("datetime", "date", "time", "timedelta", "timezone")}
_CLASS_NAME = re.compile(r"_*[A-Z]\w*")
_RENAMED = {"__builtin__": "builtins", "copy_reg": "copyreg", "numpy.core.multiarray": "numpy._core.multiarray"}

#: torch storage class → numpy dtype of its elements ("bf16": bfloat16, given back as float32)
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16", "UntypedStorage": "u1",
}
#: torch dtype name (``torch.float16`` pickled as the global ``torch float16``) → numpy dtype
TORCH_DTYPES = {
    "float64": "<f8", "double": "<f8", "float32": "<f4", "float": "<f4", "float16": "<f2", "half": "<f2",
    "bfloat16": "bf16", "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4", "int16": "<i2", "short": "<i2",
    "int8": "i1", "uint8": "u1", "bool": "?", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "complex64": "<c8", "complex128": "<c16",
}


class Global:
    """A global the pickle names without our calling it (a dtype such as ``torch.float16``, a function): inert."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Global) and (self.module, self.name) == (other.module, other.name)

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __repr__(self) -> str:
        return f"Global({self.module}.{self.name})"


class StorageType:
    """A torch storage class (``torch.HalfStorage``) of a persistent id."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype


class Storage:
    """One storage of the archive, read when a tensor first uses it (``array(dtype)``: its elements, 1-D)."""

    __slots__ = ("key", "dtype", "numel", "archive")

    def __init__(self, key: str, dtype: str, numel: int, archive: Any):
        self.key, self.dtype, self.numel, self.archive = key, dtype, numel, archive

    def array(self, dtype: str | None = None) -> np.ndarray:
        if dtype is None or dtype == self.dtype:
            return self.archive.storage(self.key, self.dtype, self.numel)
        if self.dtype == "u1":  # an untyped storage seen as ``dtype`` (``_rebuild_tensor_v3``)
            return self.archive.storage(self.key, "u1", self.numel, view=dtype)
        raise BadModelError(f"a {dtype} tensor of the {self.dtype} storage {self.key}")


def is_data_class(module: str, name: str) -> bool:
    """The rule of the module docstring: may the file name this class for an object of its tree?"""
    if (module, name) in VALUE_CLASSES:
        return True
    top = any(module == m or module.startswith(m + ".") for m in DATA_MODULES)
    return top and _CLASS_NAME.fullmatch(name) is not None


def _ints(seq: Any, what: str) -> tuple[int, ...]:
    if not isinstance(seq, (tuple, list)) or not all(type(v) is int for v in seq):
        raise BadModelError(f"tensor {what} is not a tuple of integers: {seq!r:.80}")
    return tuple(seq)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None) -> np.ndarray:
    """A tensor as a C-contiguous copy of its view (offset, size, stride in elements) of its storage."""
    if not isinstance(storage, Storage):
        raise BadModelError(f"tensor data is not a storage of the archive: {type(storage).__name__}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if type(offset) is not int or len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise BadModelError(f"bad tensor layout: offset {offset!r:.20}, size {size}, stride {stride}")
    data = storage.array(dtype)
    native, numel = data.dtype.newbyteorder("="), math.prod(size)
    if numel > len(data) + (1 << 24):  # only stride-0 (expanded) views have more elements than their storage
        raise BadModelError(f"a tensor of size {list(size)} expands its storage {storage.key} ({len(data)} elements)")
    storage.archive.spend(numel * native.itemsize)
    if numel == 0:
        return np.zeros(size, native)
    end = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if end >= len(data):
        raise BadModelError(f"a tensor of size {list(size)} reaches past its storage {storage.key} "
                            f"({len(data)} elements)")
    view = np.lib.stride_tricks.as_strided(data[offset:], size, [s * data.itemsize for s in stride], writeable=False)
    return view.astype(native, order="C")


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
    if not isinstance(dtype, Global) or dtype.module != "torch" or dtype.name not in TORCH_DTYPES:
        raise BadModelError(f"unsupported tensor dtype {dtype!r:.60}")
    return _tensor(storage, offset, size, stride, TORCH_DTYPES[dtype.name])


def _rebuild_parameter(data, *_):
    if not isinstance(data, np.ndarray):
        raise BadModelError(f"parameter data is not a tensor: {type(data).__name__}")
    return data


def _rebuild_from_type(func, new_type, args, state=None):
    if id(func) not in _OURS or not isinstance(args, tuple):
        raise _refuse(func)
    return func(*args)


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise BadModelError("bad bytes object in the pickle")
    return text.encode("latin1")


def _container(kind: type) -> Callable:
    def make(items=()):
        if not isinstance(items, (list, tuple, dict, set, frozenset, bytes, bytearray)):
            raise BadModelError(f"bad {kind.__name__} in the pickle: {type(items).__name__}")
        return kind(items)
    return make


def _complex(real=0.0, imag=0.0):
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise BadModelError("bad complex number in the pickle")
    return complex(real, imag)


def _reconstructor(cls, base, state=None):
    """``copyreg._reconstructor`` (protocols 0 and 1): ``base.__new__(cls)``; a Record for a data class."""
    if isinstance(cls, Global) and is_data_class(cls.module, cls.name):
        return Record(cls.module, cls.name, () if state is None else (state,))
    raise _refuse(cls)


class _NpDType:
    """``numpy.dtype(code, align, copy)``; BUILD gives its byte order. Plain numeric and string kinds only."""

    def __init__(self, code=None, align=False, copy=True):
        if not isinstance(code, str) or not re.fullmatch(r"[<>|=]?(\?|b1|[iufcUS]\d{1,2})", code):
            raise BadModelError(f"unsupported numpy dtype in the pickle: {code!r:.40}")
        self.code, self.order = code, "="

    def build(self, state):
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "|", "=") or state[3] or state[4]:
            raise BadModelError("unsupported numpy dtype state in the pickle")
        self.order = state[1]

    def resolve(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt if self.order in "|=" else dt.newbyteorder(self.order)


class _NpArray:
    """``numpy._core.multiarray._reconstruct(ndarray, (0,), b'b')``; BUILD gives the array."""

    def __init__(self, cls=None, shape=None, typecode=None):
        if not (isinstance(cls, Global) and (cls.module, cls.name) == ("numpy", "ndarray")):
            raise BadModelError(f"would call numpy _reconstruct of {_qualname(cls)}: refused")

    def build(self, state) -> np.ndarray:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _NpDType)
                and isinstance(state[4], bytes)):
            raise BadModelError("unsupported numpy array in the pickle")
        shape, dtype = _ints(state[1], "shape"), state[2].resolve()
        if math.prod(shape) * dtype.itemsize != len(state[4]):
            raise BadModelError("numpy array data of the wrong size in the pickle")
        return np.frombuffer(state[4], dtype).reshape(shape, order="F" if state[3] else "C").copy()


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, _NpDType) or not isinstance(data, bytes) or len(data) != dtype.resolve().itemsize:
        raise BadModelError("unsupported numpy scalar in the pickle")
    return np.frombuffer(data, dtype.resolve())[0].item()


def _identity(value, *_):
    return value


def _record_of(module: str, name: str) -> Callable:
    return lambda *args: Record(module, name, args)


#: (module, name) → our implementation of what ``torch.load`` would call
IMPLEMENTATIONS: dict[tuple[str, str], Callable] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch._utils", "_rebuild_from_type"): _rebuild_from_type,
    ("torch", "Size"): lambda seq=(): _ints(seq, "size"),
    ("torch", "device"): _record_of("torch", "device"),
    ("collections", "OrderedDict"): _container(collections.OrderedDict),
    ("collections", "defaultdict"): lambda factory=None: {},
    ("builtins", "set"): _container(set),
    ("builtins", "frozenset"): _container(frozenset),
    ("builtins", "bytearray"): _container(bytearray),
    ("builtins", "bytes"): _container(bytes),
    ("builtins", "complex"): _complex,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy", "dtype"): _NpDType,
    ("numpy._core.multiarray", "_reconstruct"): _NpArray,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    **{("torch.jit._pickle", n): _identity for n in ("build_intlist", "build_doublelist", "build_boollist",
                                                     "build_tensorlist", "build_complexlist", "restore_type_tag")},
}
_OURS = {id(f) for f in IMPLEMENTATIONS.values()}  # identity: the stack's objects are alive, ids do not collide


def _qualname(obj: Any) -> str:
    if isinstance(obj, Global):
        return f"{obj.module}.{obj.name}"
    if isinstance(obj, Record):
        return f"an object of {obj.module}.{obj.name}"
    return f"a {type(obj).__name__}"


def _refuse(func: Any) -> BadModelError:
    return BadModelError(f"would call {_qualname(func)} when loaded with torch.load: refused")


class SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler: every opcode that calls something is ours
    """Unpickles ``data.pkl`` of an archive; ``archive.storage(key, dtype, numel)`` reads the storages."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, archive: Any):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.archive = archive

    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED.get(module, module)
        if (module, name) in IMPLEMENTATIONS:
            return IMPLEMENTATIONS[(module, name)]
        if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_DTYPES:
            return StorageType(name, STORAGE_DTYPES[name])
        return Global(module, name)

    def persistent_load(self, pid: Any) -> Storage:
        ok = isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[1], StorageType) and type(pid[4]) is int
        if not (ok and all(isinstance(v, str) for v in pid[:1] + pid[2:4]) and pid[0] == "storage"
                and re.fullmatch(r"\w{1,64}", pid[2]) and pid[4] >= 0):
            raise BadModelError(f"persistent id {pid!r:.80} is not a tensor storage: refused")
        return Storage(pid[2], pid[1].dtype, pid[4], self.archive)

    def _call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise BadModelError("call arguments are not a tuple")
        if id(func) in _OURS:
            return func(*args)
        if isinstance(func, Global) and is_data_class(func.module, func.name):
            if (func.module, func.name) in VALUE_CLASSES or (not args and func.name.endswith("Namespace")):
                return Record(func.module, func.name, args)
        raise _refuse(func)

    def _new(self, cls: Any, args: Any) -> Record:
        if isinstance(cls, Global) and is_data_class(cls.module, cls.name) and isinstance(args, tuple):
            return Record(cls.module, cls.name, args)
        raise _refuse(cls)

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self):
        args = self.stack.pop()
        self.stack[-1] = self._new(self.stack[-1], args)

    def load_newobj_ex(self):
        kwargs, args = self.stack.pop(), self.stack.pop()
        self.stack[-1] = self._new(self.stack[-1], args + ((kwargs,) if kwargs else ()))

    def _instantiate(self, klass, args):
        self.append(self._call(klass, tuple(args)) if args else self._new(klass, ()))

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Record):
            if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
                state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, slot values)
            if isinstance(state, dict) and isinstance(inst.state, dict):
                inst.state.update(state)
            else:
                inst.state = state
        elif isinstance(inst, _NpDType):
            inst.build(state)
        elif isinstance(inst, _NpArray):
            arr = self.stack[-1] = inst.build(state)
            for k, v in list(self.memo.items()):
                if v is inst:
                    self.memo[k] = arr
        elif not isinstance(inst, dict):  # an OrderedDict's attributes (a state dict's _metadata) are left out
            raise BadModelError(f"BUILD of a {type(inst).__name__} in the pickle: refused")

    def load_append(self):
        value = self.stack.pop()
        self._target(list).append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._target(list).extend(items)

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        self._target(dict)[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(dict)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        self._target(set).update(items)

    def _target(self, kind: type) -> Any:
        if not isinstance(self.stack[-1], kind):
            raise BadModelError(f"the pickle adds items to a {type(self.stack[-1]).__name__}: refused")
        return self.stack[-1]

    def _no_extension(self):
        raise BadModelError("the pickle uses an extension code: refused")

    for _op, _fn in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj), (pickle.NEWOBJ_EX, load_newobj_ex),
                     (pickle.BUILD, load_build), (pickle.APPEND, load_append), (pickle.APPENDS, load_appends),
                     (pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                     (pickle.ADDITEMS, load_additems), (pickle.EXT1, _no_extension), (pickle.EXT2, _no_extension),
                     (pickle.EXT4, _no_extension)):
        dispatch[_op[0]] = _fn
    del _op, _fn


def unpickle(data: bytes, archive: Any) -> Any:
    """The object tree of ``data`` (a pickle), or a one-line :class:`BadModelError` (without the file's name)."""
    try:
        return SafeUnpickler(data, archive).load()
    except BadModelError:
        raise
    except Exception as e:  # malformed pickles: stack underflow, bad opcodes, wrong argument counts, ...
        raise BadModelError(f"corrupt pickle: {type(e).__name__}: {e}"[:300]) from None
