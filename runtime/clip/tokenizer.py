"""CLIP's text tokenizer without PyTorch: text → (N, 77) int64 token ids, identical to ``clip.tokenize``.

Stages: clean (ftfy, HTML entities twice, whitespace collapsed, lower case) → split into words with
CLIP's regular expression → each word's UTF-8 bytes mapped to printable characters → byte-pair merges
from ``bpe_simple_vocab_16e6.txt.gz`` → ids, framed by start/end-of-text and zero-padded to 77.
Needs ``ftfy`` and ``regex`` (the ``[clip]`` extra).
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadArgumentError, BadModelError

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
CONTEXT_LENGTH = 77
MAX_TOKEN_BYTES = 32
"""The longest token of CLIP's vocabulary, in byte symbols (with its ``</w>``)."""
NUM_MERGES = 48894  # merge lines 1..48894 of the vocabulary file (line 0 is a header)
VOCAB_SIZE = 49408  # 256 byte symbols, 256 word-final byte symbols, the merges, 2 special tokens
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"

# Words: the special tokens, English contractions, runs of letters, single digits, runs of other
# non-space characters. Case-insensitive like CLIP's (this matters for characters such as 'ſ').
_WORD_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"


def _byte_symbols() -> list[str]:
    """The 256 printable characters standing for the bytes 0..255 (GPT-2's reversible byte mapping).

    Bytes that are already visible Latin-1 characters map to themselves; the others (controls, space,
    soft hyphen, ...) map in increasing order to U+0100, U+0101, ...
    """
    visible = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    symbols, extra = [], 0
    for b in range(256):
        if b in visible:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _vocab_order(symbols: list[str]) -> list[str]:
    """The byte symbols in vocabulary order: visible Latin-1 first (by byte), then the remapped ones."""
    return sorted(symbols, key=lambda c: (ord(c) >= 256, ord(c)))


class ClipTokenizer:
    """CLIP's byte-level BPE tokenizer.

    Args:
        bpe_path: the ``bpe_simple_vocab_16e6.txt.gz`` merges file (CLIP bundles carry a copy).
        context_length: number of ids per text (77 for every CLIP model).
    """

    def __init__(self, bpe_path: str | os.PathLike[str], context_length: int = CONTEXT_LENGTH):
        try:
            import ftfy
            import regex
        except ImportError as e:
            raise ImportError(f"CLIP text prompts need ftfy and regex, base dependencies of fastsam-onnx: reinstall it ({e})") from None
        if context_length < 2:
            raise BadArgumentError(f"context_length must be >= 2, got {context_length}")
        self._fix_text = ftfy.fix_text
        self._regex = regex
        self.bpe_path = Path(bpe_path)
        self.context_length = int(context_length)
        try:
            with gzip.open(self.bpe_path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise BadModelError(f"cannot read the CLIP BPE vocabulary {self.bpe_path}: {e}") from None
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
            raise BadModelError(f"{self.bpe_path} is not CLIP's BPE vocabulary ({len(merges)} merge lines)")

        symbols = _byte_symbols()
        self._byte_symbol = symbols
        base = _vocab_order(symbols)
        tokens = base + [s + END_OF_WORD for s in base] + ["".join(m) for m in merges] + [SOT, EOT]
        # A later duplicate wins, as when the list is turned into a dict.
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
        self.vocab_size = len(tokens)
        self.sot_id = self.encoder[SOT]
        self.eot_id = self.encoder[EOT]
        self._rank: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self._words = regex.compile(_WORD_PATTERN, regex.IGNORECASE)
        self._spaces = regex.compile(r"\s+")
        self._bpe = functools.lru_cache(maxsize=1 << 16)(self._bpe_uncached)

    def clean(self, text: str) -> str:
        """ftfy repair, HTML entities decoded twice, whitespace runs → one space, trimmed, lower case."""
        text = html.unescape(html.unescape(self._fix_text(text))).strip()
        return self._spaces.sub(" ", text).strip().lower()

    def _bpe_uncached(self, word: str) -> tuple[int, ...]:
        """Ids of one word (already mapped to byte symbols): lowest-rank adjacent pair merged first."""
        if word in (SOT, EOT):
            return (self.encoder[word],)
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        rank = self._rank
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                r = rank.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            first, second = best
            merged, i, n = [], 0, len(parts)
            while i < n:
                if i + 1 < n and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(self.encoder[p] for p in parts)

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """BPE ids of ``text`` without start/end tokens; with ``limit``, stop once ``limit`` ids are collected
        (the ids returned start with exactly the ids of the whole text).

        Work is bounded for hostile input: words are tokenized lazily, words longer than 64 byte symbols are
        not cached, and with ``limit`` a word is cut to ``MAX_TOKEN_BYTES * limit`` bytes first (a word that
        long yields more than ``limit`` ids anyway; BPE time grows with the square of a word's length).
        """
        ids: list[int] = []
        cut = None if limit is None else MAX_TOKEN_BYTES * max(int(limit), 1)
        for match in self._words.finditer(self.clean(text)):
            raw = match.group().encode("utf-8")[:cut]
            word = "".join(self._byte_symbol[b] for b in raw)
            ids.extend(self._bpe(word) if len(word) <= 64 else self._bpe_uncached(word))
            if limit is not None and len(ids) >= limit:
                break
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Token ids, shape (N, context_length) int64: start, BPE ids, end, zeros.

        A text longer than the context is cut and its last id replaced by the end token
        (``clip.tokenize(..., truncate=True)``).
        """
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise BadArgumentError(f"texts must be strings, got {type(text).__name__} at index {row}")
            ids = [self.sot_id, *self.encode(text, limit=self.context_length - 1), self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length - 1] + [self.eot_id]
            out[row, : len(ids)] = ids
        return out
