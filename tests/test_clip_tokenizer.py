"""The torch-free CLIP tokenizer gives the ids of ``clip.tokenize(..., truncate=True)`` on a broad corpus."""

from __future__ import annotations

import gzip
import random
import warnings

import numpy as np
import pytest

from fastsam_onnx.clip.tokenizer import BPE_NAME, ClipTokenizer
from fastsam_onnx.errors import BadArgumentError, BadModelError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clip = pytest.importorskip("clip")
    from clip.simple_tokenizer import default_bpe

WORDS = [
    # Latin, accents, other scripts
    "photo", "dog", "bus", "Zidane", "tie", "café", "naïve", "Über", "straße", "ẞIG", "İstanbul", "ΣΟΦΙΑ",
    "Ελληνικά", "русский", "Україна", "עברית", "العربية", "हिन्दी", "বাংলা", "ภาษาไทย", "中文字符",
    "日本語のテキスト", "カタカナ", "한국어", "ქართული", "Հայերեն", "ʻokina", "Ꭰ Cherokee", "e\u0301",
    "a\u0308\u0323", "ǅemal", "ﬁnance", "Ⅻ", "①②", "½", "²³", "٣٤٥", "१२३", "K\u212a", "ſtraße",
    # emoji, including modifiers, ZWJ sequences and flags
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "🐈‍⬛", "🧑🏿‍🚀",
    # punctuation, symbols, contractions, special-token look-alikes
    "it's", "they'll", "I'M", "we've", "you'd", "don't", "'s", "'ſ", "O'Neil", "--", "...", "?!", "(a)",
    "[x]", "{y}", "@user", "#tag", "$5.99", "100%", "C++", "e-mail", "a/b\\c", "«quote»", "“smart”",
    "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|endoftext", "|>",
    # numbers
    "0", "42", "3.14159", "1,000,000", "-7", "1e-9", "2024-01-31", "0x1F",
    # HTML entities (decoded twice by CLIP)
    "&amp;", "&lt;b&gt;", "&amp;amp;", "&amp;lt;i&amp;gt;", "&#39;", "&quot;hi&quot;", "&nbsp;",
    "&#x1F600;", "&eacute;", "&notanentity;", "AT&T",
]

SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "   \t\n "]

# Code point ranges to draw random characters from (letters, marks, digits, symbols, CJK, emoji, controls).
RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F),
    (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2100, 0x22FF), (0x3040, 0x30FF),
    (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
    (0x0, 0x1F),
]


def _mojibake(text: str) -> str:
    """UTF-8 bytes read as Windows-1252 (what ftfy repairs)."""
    return text.encode("utf-8").decode("cp1252", errors="ignore")


def corpus(n: int = 1200, seed: int = 0) -> list[str]:
    """Deterministic test strings: fixed edge cases first, then random mixtures."""
    rng = random.Random(seed)
    fixed = [
        "", " ", "\n\t ", "&nbsp;", "\u200b", "a", "A", "a photo of a dog", "A PHOTO OF A DOG",
        "cafÃ©", "Ã¼ber", "â€œquotedâ€\x9d", "doesnâ€™t", _mojibake("naïve façade — “quoted”"),
        "&lt;b&gt;bold&lt;/b&gt;", "&amp;lt;b&amp;gt;", "Tom &amp; Jerry", "   spaced    out   ",
        "line1\nline2\r\nline3", "tabs\t\tand\u00a0nbsp", "😀" * 100, "a" * 500, "ab" * 300,
        " ".join(["word"] * 80), " ".join(["a photo of a dog"] * 30), "1" * 120, "!?" * 200,
        "<|startoftext|><|endoftext|>", "x <|endoftext|> y", "İ" * 3, "ΣΑΣ σας", "\ufeffbom",
    ]
    out = list(fixed)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.45:  # words from the list, separated by varied whitespace
            parts = []
            for _ in range(rng.randint(1, 12)):
                parts.append(rng.choice(WORDS))
                parts.append(rng.choice(SPACES) if rng.random() < 0.3 else " ")
            text = "".join(parts)
        elif kind < 0.7:  # random code points
            text = "".join(chr(rng.randint(*rng.choice(RANGES))) for _ in range(rng.randint(1, 40)))
            text = text.replace("\ud800", "")  # no surrogates in these ranges, kept for safety
        elif kind < 0.8:  # mojibake of accented or non-Latin words
            text = _mojibake(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))))
        elif kind < 0.9:  # over-long texts, beyond 77 tokens
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120)))
        else:  # case and number mixtures
            text = "".join(
                rng.choice([str(rng.randint(0, 10**rng.randint(1, 9))), rng.choice(WORDS).upper(), rng.choice(SPACES)])
                for _ in range(rng.randint(1, 10))
            )
        out.append(text)
    return out


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer(default_bpe())


def test_corpus_is_broad():
    texts = corpus()
    assert len(texts) >= 1000 and len(set(texts)) > 950
    lengths = [len(clip.clip._tokenizer.encode(t)) for t in texts]
    assert sum(n > 75 for n in lengths) >= 100  # many texts need truncation
    assert sum(n == 0 for n in lengths) >= 3  # and some clean to nothing


def test_ids_identical_to_clip_tokenize(tokenizer):
    texts = corpus()
    ref = clip.tokenize(texts, context_length=77, truncate=True).numpy()
    got = tokenizer(texts)
    assert got.dtype == np.int64 and got.shape == (len(texts), 77)
    bad = [texts[i] for i in np.flatnonzero((ref != got).any(1))]
    assert not bad, f"{len(bad)} of {len(texts)} texts differ, e.g. {bad[:3]!r}"


def test_untruncated_encode_identical(tokenizer):
    for text in corpus(300, seed=1):
        assert tokenizer.encode(text) == clip.clip._tokenizer.encode(text), repr(text)


def test_vocabulary_matches_clip(tokenizer):
    assert tokenizer.vocab_size == 49408
    assert (tokenizer.sot_id, tokenizer.eot_id) == (49406, 49407)
    assert tokenizer.encoder == clip.clip._tokenizer.encoder


def test_framing_padding_and_truncation(tokenizer):
    ids = tokenizer("a photo of a dog")
    n = 2 + len(tokenizer.encode("a photo of a dog"))
    assert ids.shape == (1, 77)
    assert ids[0, 0] == 49406 and ids[0, n - 1] == 49407 and (ids[0, n:] == 0).all()
    empty = tokenizer([""])[0]
    assert list(empty[:3]) == [49406, 49407, 0]
    long = tokenizer(" ".join(["dog"] * 200))[0]
    assert long[-1] == 49407 and (long[1:-1] != 0).all()
    assert int(np.argmax(long)) == 76  # the text tower pools at the end token


def test_other_context_length(tokenizer):
    short = ClipTokenizer(default_bpe(), context_length=8)
    texts = ["a photo of a very big dog indeed", "hi"]
    np.testing.assert_array_equal(short(texts), clip.tokenize(texts, context_length=8, truncate=True).numpy())


def test_bpe_cache_is_used(tokenizer):
    tokenizer._bpe.cache_clear()
    tokenizer(["dog dog dog dog"])
    info = tokenizer._bpe.cache_info()
    assert info.misses == 1 and info.hits == 3


def test_errors(tokenizer, tmp_path):
    with pytest.raises(BadArgumentError, match="strings"):
        tokenizer(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(BadModelError, match="BPE"):
        ClipTokenizer(tmp_path / "missing.txt.gz")
    bad = tmp_path / BPE_NAME
    with gzip.open(bad, "wt") as f:
        f.write("header\na b\n")
    with pytest.raises(BadModelError, match="not CLIP's BPE"):
        ClipTokenizer(bad)


def test_long_texts_stop_early_with_the_same_ids(tokenizer):
    """A 20,000-word text gives clip.tokenize's ids although only the first ~76 ids are computed."""
    clip = pytest.importorskip("clip")
    rng = random.Random(3)
    words = ["photo", "of", "a", "dog", "multicoloured", "über", "42", "!!", "skyscraper"]
    text = " ".join(rng.choice(words) for _ in range(20000))
    np.testing.assert_array_equal(tokenizer([text]), clip.tokenize([text], truncate=True).numpy())
    assert len(tokenizer.encode(text, limit=76)) < 100 < len(tokenizer.encode(text))


def test_hostile_single_word_is_bounded(tokenizer):
    """One 1 MB word (BPE is quadratic in a word's length) is cut before BPE and never enters the word cache."""
    tokenizer._bpe.cache_clear()
    ids = tokenizer(["ab" * 500_000])[0]
    assert ids[0] == tokenizer.sot_id and ids[-1] == tokenizer.eot_id and (ids > 0).all()
    assert tokenizer._bpe.cache_info().currsize <= 2  # only short words (none here) are cached
    assert tokenizer.encode("ab" * 500_000, limit=76)[:76] == tokenizer.encode("ab" * 2000)[:76]
