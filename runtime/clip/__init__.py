"""CLIP for text prompts, torch-free: the two ONNX towers (:mod:`.model`), the BPE tokenizer (:mod:`.tokenizer`)
and the image preprocessing (:mod:`.preprocess`), each bit-for-bit the ``clip`` package's, and the masked
instance crops CLIP is shown (:mod:`.crops`).

``from fastsam_onnx.clip import CLIP`` is the entry point; ``FastSAM`` loads it lazily for text prompts.
"""

from .model import CLIP, l2_normalize
from .tokenizer import ClipTokenizer

__all__ = ["CLIP", "ClipTokenizer", "l2_normalize"]
