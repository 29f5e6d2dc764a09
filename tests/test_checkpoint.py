"""read_checkpoint (issue 24 item 2): the layouts FastSAM users meet load with numpy alone, equal to torch.load's.

Checkpoints are made here: an ultralytics training checkpoint saved as the trainer saves it (fp16 EMA model, numpy
scalars, the args namespace), the same with ultralytics 8.0's module paths, the shipped demo checkpoint, a traced CLIP
saved with torch.jit.save (as OpenAI's ViT-B-32.pt was made), a scripted module, a plain CLIP state dict, and tensors
of every dtype, strided, offset and shared. Refusals and corrupt files: tests/test_checkpoint_refusals.py.
"""

from __future__ import annotations

import copy
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:FutureWarning")

from fastsam_onnx.export.checkpoint import Record, read_checkpoint, state_dict  # noqa: E402
from fastsam_onnx.export.unpickle import Global  # noqa: E402


def assert_same(ref, ours, where: str = "root") -> None:
    """``ours`` (read_checkpoint's tree) is ``ref`` (torch.load's): arrays equal with the same dtype (bfloat16 as
    float32), modules and other objects as Records of the same class name whose state is their ``__dict__``."""
    if isinstance(ref, torch.Tensor):
        exp = (ref.detach().float() if ref.dtype == torch.bfloat16 else ref.detach()).numpy()
        assert isinstance(ours, np.ndarray), where
        assert (ours.dtype, ours.shape) == (exp.dtype, exp.shape), where
        assert np.array_equal(ours, exp, equal_nan=True), where
    elif isinstance(ref, torch.dtype):
        assert ours == Global("torch", str(ref).split(".")[1]), where
    elif isinstance(ref, torch.device):
        assert isinstance(ours, Record) and ours.name == "device" and ours.args[0] == ref.type, where
    elif isinstance(ref, dict):
        assert isinstance(ours, dict) and list(ours) == list(ref), where
        for k in ref:
            assert_same(ref[k], ours[k], f"{where}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is (list if isinstance(ref, list) else tuple) and len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ref, ours)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ref, (set, frozenset)):
        assert ours == ref, where
    elif isinstance(ref, np.ndarray):
        assert ours.dtype == ref.dtype and np.array_equal(ours, ref), where
    elif isinstance(ref, np.generic):
        assert ours == ref.item() and type(ours) is type(ref.item()), where
    elif ref is None or isinstance(ref, (bool, int, float, str, bytes)):
        assert type(ours) is type(ref) and ours == ref, where
    else:
        assert isinstance(ours, Record) and ours.name == type(ref).__name__, where
        assert ours.module == type(ref).__module__, where
        assert_same(vars(ref), ours.state, f"{where}.{ours.name}")


def assert_state_dict(ref: dict, ours: dict) -> None:
    assert list(ours) == list(ref)
    for k, v in ref.items():
        assert ours[k].dtype == v.numpy().dtype and np.array_equal(ours[k], v.numpy()), k


@pytest.fixture(scope="module")
def ultra(tmp_path_factory) -> Path:
    """yolov8s-seg (FastSAM-s's architecture, nc=1) saved as ultralytics' trainer saves a checkpoint."""
    from ultralytics import __version__
    from ultralytics.nn.tasks import SegmentationModel
    from ultralytics.utils import DEFAULT_CFG_DICT, IterableSimpleNamespace

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False)
        for m in model.modules():  # BN statistics away from their defaults
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    model.names = {0: "object"}
    model.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, "task": "segment"})  # as the 8.0 trainer set it
    path = tmp_path_factory.mktemp("ckpt") / "fastsam-s-like.pt"
    torch.save({
        "epoch": 3, "best_fitness": np.float64(0.625), "model": None, "ema": copy.deepcopy(model).half(),
        "updates": 12, "optimizer": None, "train_args": {**DEFAULT_CFG_DICT, "task": "segment", "imgsz": 1024},
        "train_metrics": {"fitness": np.float64(0.625), "metrics/mAP50(M)": np.float32(0.5)},
        "train_results": {"epoch": [1, 2, 3]}, "date": "2024-01-01T00:00:00", "version": __version__,
        "license": "AGPL-3.0 (https://ultralytics.com/license)", "array": np.arange(6, dtype=np.int32).reshape(2, 3),
    }, path)
    return path


def test_ultralytics_checkpoint_equals_torch_load(ultra):
    ref, ours = torch.load(ultra, weights_only=False), read_checkpoint(ultra)
    assert_same(ref, ours)  # every key, attribute, tensor (fp16 as stored), numpy scalar and namespace
    model, rec = ref["ema"], ours["ema"]
    assert (rec.module, rec.name) == ("ultralytics.nn.tasks", "SegmentationModel")
    assert_state_dict(model.state_dict(), state_dict(rec))
    assert state_dict(rec)["model.0.conv.weight"].dtype == np.float16
    assert rec.yaml == model.yaml and rec.names == {0: "object"} and np.array_equal(rec.stride, model.stride.numpy())
    assert rec.get("args").name == "IterableSimpleNamespace" and rec.get("args").task == "segment"
    assert rec.get("missing", 5) == 5 and rec.get("yaml") is rec.yaml
    assert len(rec.model) == len(model.model) == 23
    for layer, ref_layer in zip(rec.model, model.model):
        assert (layer.f, layer.i, layer.type, layer.np) == (ref_layer.f, ref_layer.i, ref_layer.type, ref_layer.np)
        assert layer.name == type(ref_layer).__name__
    head = rec.model[-1]
    assert (head.name, head.nc, head.nm, head.npr, head.reg_max) == ("Segment", 1, 32, 128, 16)
    assert np.array_equal(head.stride, [8, 16, 32]) and head.f == [15, 18, 21]
    assert rec.model[0].conv.name == "Conv2d" and rec.model[0].bn.name == "BatchNorm2d"
    assert rec.model[0].conv.weight.dtype == np.float16 and rec.model[0].act.name == "SiLU"
    assert ours["best_fitness"] == 0.625 and ours["array"].dtype == np.int32


def test_ultralytics_8_0_module_paths(ultra, tmp_path):
    """ultralytics 8.0 pickled ``ultralytics.nn.modules Conv`` and ``ultralytics.yolo.utils IterableSimpleNamespace``:
    the same checkpoint with those paths reads to the same classes by name and the same tensors."""
    renames = {b"cultralytics.nn.modules.%s\n" % m: b"cultralytics.nn.modules\n" for m in (b"conv", b"block", b"head")}
    renames[b"cultralytics.utils\nIterableSimpleNamespace\n"] = b"cultralytics.yolo.utils\nIterableSimpleNamespace\n"
    old = tmp_path / "fastsam-8.0-paths.pt"
    with zipfile.ZipFile(ultra) as src, zipfile.ZipFile(old, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                for a, b in renames.items():
                    assert a in data
                    data = data.replace(a, b)
            dst.writestr(info.filename, data)
    new, rec = read_checkpoint(ultra)["ema"], read_checkpoint(old)["ema"]
    assert rec.model[0].module == "ultralytics.nn.modules" and rec.model[0].name == "Conv"
    assert rec.get("args").module == "ultralytics.yolo.utils"
    assert [m.name for m in rec.model] == [m.name for m in new.model]
    a, b = state_dict(new), state_dict(rec)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_shipped_demo_checkpoint(demo):
    path = demo / "fastsam-demo.pt"
    ref, ours = torch.load(path, weights_only=False), read_checkpoint(path)
    assert_same(ref, ours)
    assert_state_dict(ref["model"].state_dict(), state_dict(ours["model"]))


def _tiny_clip():
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from clip_fixtures import TINY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from clip.model import CLIP, build_model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = CLIP(**TINY)
        model.initialize_parameters()
    return build_model(model.half().state_dict()).eval()  # fp16 weights, fp32 norms and embeddings, as clip.load's


def test_torchscript_clip_archive(tmp_path):
    """A traced CLIP saved with torch.jit.save (OpenAI's ViT-B-32.pt is one): ``__torch__.*`` records whose
    attributes hold the tensors; state_dict() is the traced module's and the eager model's."""
    model = _tiny_clip()
    image, text = torch.randn(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, {"forward": (image, text), "encode_image": image, "encode_text": text})
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(traced, str(path))
    rec = read_checkpoint(path)
    # (TorchScript mangles the module path of a class compiled before in the process: __torch__.clip.model.___torch_mangle_N)
    assert isinstance(rec, Record) and rec.name == "CLIP" and rec.module.split(".___torch_mangle_")[0] == "__torch__.clip.model"
    ours = state_dict(rec)
    assert_state_dict(torch.jit.load(str(path)).state_dict(), ours)
    assert_state_dict(model.state_dict(), ours)
    assert ours["visual.conv1.weight"].dtype == np.float16 and ours["positional_embedding"].dtype == np.float32
    block = rec.transformer.resblocks[0]
    assert rec.visual.conv1.name == "Conv2d" and block.attn.name == "MultiheadAttention"
    assert block.attn.in_proj_weight.shape == (192, 64) and block.mlp.c_fc.name == "Linear"
    assert "visual.transformer.resblocks.0.attn.out_proj.weight" in ours


class _Scriptable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.register_buffer("buf", torch.arange(4.0))
        self.attr = torch.ones(2)  # a tensor attribute: not in the state dict
        self.ints: list[int] = [1, 2, 3]
        self.bn = torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x) + self.buf + self.attr.sum() + self.ints[0])


def test_scripted_module(tmp_path):
    """torch.jit.script: the archive's code names parameters and buffers; a tensor attribute is not in state_dict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(_Scriptable())
    path = tmp_path / "scripted.pt"
    torch.jit.save(scripted, str(path))
    rec = read_checkpoint(path)
    assert_state_dict(scripted.state_dict(), state_dict(rec))
    assert np.array_equal(rec.attr, [1, 1]) and rec.ints == [1, 2, 3] and rec.bn.name == "BatchNorm1d"


def test_plain_state_dict_and_module(tmp_path):
    """A CLIP state dict saved with torch.save (as tests/clip_fixtures.py makes them), and a pickled torch.nn module
    tree with a non-persistent buffer (not in state_dict, as in torch)."""
    sd = _tiny_clip().state_dict()
    torch.save(sd, tmp_path / "clip-sd.pt")
    ours = read_checkpoint(tmp_path / "clip-sd.pt")
    assert_same(dict(sd), dict(ours))
    assert_state_dict(sd, state_dict(ours))
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.SiLU())
    seq.register_buffer("scratch", torch.ones(3), persistent=False)
    torch.save(seq, tmp_path / "seq.pt")
    rec = read_checkpoint(tmp_path / "seq.pt")
    assert_same(torch.load(tmp_path / "seq.pt", weights_only=False), rec)
    assert_state_dict(seq.state_dict(), state_dict(rec))
    assert "scratch" not in state_dict(rec) and np.array_equal(rec.scratch, [1, 1, 1])


def test_dtypes_strides_offsets(tmp_path):
    """fp32/fp16/bf16/fp64/int*/uint8/bool/complex tensors, a transposed view, a strided slice, a view at an offset,
    an empty and a 0-d tensor, a parameter; torch.Size, torch.device and dtypes; views share one storage."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g)
    tensors = {
        "f32": x, "t": x.t(), "slice": x[1:3, ::2], "offset": x[2], "col": x[:, 5], "f16": x.half(),
        "bf16": x.bfloat16(), "bf16_t": x.bfloat16().t()[1:], "f64": x.double(), "i64": torch.arange(-3, 3),
        "i32": torch.arange(5, dtype=torch.int32), "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.arange(-2, 2, dtype=torch.int8), "u8": torch.arange(250, 255, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]), "c64": torch.randn(3, dtype=torch.complex64, generator=g),
        "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5), "param": torch.nn.Parameter(x[1:]),
        "u16": torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16),
    }
    extra = {"size": x.shape, "device": torch.device("cpu"), "dtype": torch.float16, "set": {1, 2}, "bytes": b"\x00\xff"}
    torch.save({**tensors, **extra}, tmp_path / "misc.pt")
    ref, ours = torch.load(tmp_path / "misc.pt"), read_checkpoint(tmp_path / "misc.pt")
    assert_same(ref, ours)
    assert ours["bf16"].dtype == np.float32 and np.array_equal(ours["bf16"], x.bfloat16().float().numpy())
    assert ours["t"].flags.c_contiguous and ours["t"].flags.writeable and ours["size"] == (4, 6)


def test_storages_read_once_and_lazily(tmp_path, monkeypatch):
    """Each storage entry is read once however many tensors view it; entries no tensor uses are not read."""
    from fastsam_onnx.export import checkpoint

    x = torch.randn(8, 8)
    torch.save({"a": x, "b": x.t(), "c": x[3:], "d": torch.ones(3)}, tmp_path / "shared.pt")
    with zipfile.ZipFile(tmp_path / "shared.pt", "a") as z:
        z.writestr("shared/data/99", b"\x00" * 64)  # an entry nothing refers to
    reads = []
    entry = checkpoint._Archive.entry
    monkeypatch.setattr(checkpoint._Archive, "entry", lambda self, name, *a: reads.append(name) or entry(self, name, *a))
    ours = read_checkpoint(tmp_path / "shared.pt")
    assert np.array_equal(ours["b"], x.t().numpy()) and np.array_equal(ours["c"], x[3:].numpy())
    data = [n for n in reads if "/data/" in n]
    assert sorted(data) == ["shared/data/0", "shared/data/1"]


def test_big_endian_archive(tmp_path):
    """``byteorder`` = big: the storages are byte-swapped back."""
    x = torch.randn(3, 5)
    torch.save({"x": x, "v": x[1:, 2:]}, tmp_path / "le.pt")
    with zipfile.ZipFile(tmp_path / "le.pt") as src, zipfile.ZipFile(tmp_path / "be.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(info.filename.replace("le/", "be/"), data)
    ours = read_checkpoint(tmp_path / "be.pt")
    assert ours["x"].dtype == np.float32 and np.array_equal(ours["x"], x.numpy())
    assert np.array_equal(ours["v"], x[1:, 2:].numpy())


def test_reads_with_torch_blocked(ultra, tmp_path):
    """read_checkpoint in a child process in which importing torch, ultralytics or clip fails: nothing heavy is
    imported or even tried, and the trees are whole."""
    from torchfree import run_blocked

    model = _tiny_clip()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (torch.randn(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)))
    torch.jit.save(traced, str(tmp_path / "jit.pt"))
    code = r"""
import sys
from fastsam_onnx.export.checkpoint import read_checkpoint, state_dict
counts = []
for p in sys.argv[1:]:
    tree = read_checkpoint(p)
    counts.append(len(state_dict(tree["ema"] if isinstance(tree, dict) and "ema" in tree else tree)))
report(counts=counts)
"""
    got = run_blocked(code, str(ultra), str(tmp_path / "sd.pt"), str(tmp_path / "jit.pt"))
    n_ultra = len(torch.load(ultra, weights_only=False)["ema"].state_dict())
    assert got == {"counts": [n_ultra, len(model.state_dict()), len(model.state_dict())], "loaded": [], "attempts": []}
