"""The build's tokenization (`dscoder.data.encode`) gives the ids the tokenizers library gives.

Checked at every level the fast path could go wrong: its hand-written ASCII split against the
library's pre-tokenizers (every ASCII character pair, every triple of character classes,
random text), its cuts of non-ASCII text, its ids against the library's on real source and
random Unicode, documents against a per-segment library encode laid out here, and whole
builds' `.bin` files against builds run with `--library-encode`. Nothing here is timed
(`benchmarks/tokenize_corpus.py` measures the speed).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from tokenizers import Regex
from tokenizers import Tokenizer as Backend
from tokenizers import pre_tokenizers

from dscoder.data import encode, fim, pipeline
from dscoder.data.encode import SPLITTERS, TextEncoder, splitter_for
from dscoder.data.fim import Segment
from dscoder.data.pack import DocumentEncoder, _plain
from dscoder.tokenizer.tokenizer import Tokenizer, pre_tokenizer_for

ASCII = [chr(i) for i in range(128)]
# One or two of each class the splits tell apart (letters of the contractions 's 't 're 've 'm
# 'll 'd among them), and the controls Python's `\s` takes for spaces but Unicode does not.
CLASSES = list("aZsrl0 \t\x0b\r\n('_.$~\x00\x1c")
# Non-ASCII letters, CJK, other scripts' digits, Unicode spaces and line separators, marks, emoji.
UNICODE = list("éß中文한Ωﬁ٣०０Ⅻ²½\u00a0\u3000\u0085\u2028\u2029\u1680\ufeff\u200b\u0301😀«»…¿")


def _byte_level(text: str) -> str:
    """`text` in the byte-level alphabet, as the library's pre-tokenizers print their pieces."""
    (mapped, _), = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    return mapped


def _library_pieces(name: str, text: str) -> list[str]:
    return [piece for piece, _ in pre_tokenizer_for(name).pre_tokenize_str(text)]


def _our_pieces(name: str, text: str) -> list[str]:
    """Our pieces in the library's spelling; a unit we keep whole is pre-tokenized by the library alone."""
    out = []
    for piece in SPLITTERS[name].pieces(text):
        out += [_byte_level(piece)] if piece.isascii() else _library_pieces(name, piece)
    return out


def _random_texts(alphabet: list[str], n: int, seed: int, longest: int = 40) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest))) for _ in range(n)]


# ---- the split ---------------------------------------------------------------------------------

def test_ascii_classes_are_the_librarys():
    """The module's ASCII classes are Oniguruma's `\\s`, `\\p{L}`, `\\p{P}`, `\\p{N}`, read back from the library."""
    def members(pattern: str) -> str:  # \x01 is in none of them: "\x01c\x01" splits in three when c matches
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        return "".join(c for c in ASCII if len(split.pre_tokenize_str(f"\x01{c}\x01")) == 3)

    def expand(cls: str) -> str:
        return "".join(c for c in ASCII if re.fullmatch(f"[{cls}]", c))

    assert members(r"\s") == encode._SPACE
    assert members(r"\p{L}") == expand(encode._LETTER)
    assert members(r"\p{P}") == expand(encode._PUNCT)
    assert members(r"\p{N}") == expand(encode._DIGIT)


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_ascii_split_is_the_library_pre_tokenizer(name):
    texts = ["".join(pair) for pair in itertools.product(ASCII, repeat=2)]
    texts += ["".join(triple) for triple in itertools.product(CLASSES, repeat=3)]
    texts += ["'re'VE'll's", " \t 1 2x  y\r\n  \n(", "def f(x):\r\n\treturn x  # 'd\n\n    "]
    texts += _random_texts(ASCII + CLASSES * 4, 3000, seed=1)
    for text in texts:
        assert _our_pieces(name, text) == _library_pieces(name, text), repr(text)


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_non_ascii_text_is_cut_only_where_the_library_cuts(name):
    """A unit we keep whole, pre-tokenized alone by the library, gives what it gives inside the text."""
    texts = _random_texts(CLASSES * 3 + UNICODE, 3000, seed=2, longest=60)
    texts += ["é\n", "\né", "x\né", "é\r\nx\n\n中 1", "  é\n  x\n", "a１\n2", "\u2028x\n\u0085\ny"]
    for text in texts:
        assert _our_pieces(name, text) == _library_pieces(name, text), repr(text)


def test_only_exactly_known_pre_tokenizers_take_the_fast_path():
    backend = Backend.from_str(encode._EMPTY)
    for name in SPLITTERS:
        backend.pre_tokenizer = pre_tokenizer_for(name)
        assert splitter_for(backend) is SPLITTERS[name]
    backend.pre_tokenizer = pre_tokenizer_for("deepseek-llm")
    assert splitter_for(backend) is None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)  # a space added first
    assert splitter_for(backend) is None
    backend.pre_tokenizer = pre_tokenizer_for("gpt2")
    from tokenizers import normalizers
    backend.normalizer = normalizers.NFKC()
    assert splitter_for(backend) is None


# ---- ids ---------------------------------------------------------------------------------------

def _tokenizer_path(name: str, request) -> Path:
    """trained: a BPE trained on stdlib packages with DeepSeek-Coder's pre-tokenizer and FIM tokens;
    embedded: the embedded model's (SmolLM2's); deepseek: DeepSeek-Coder's, from ../shared."""
    if name == "deepseek":
        return shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf")
    if name == "embedded":
        return request.getfixturevalue("smollm2_gguf")
    return request.getfixturevalue("tiny_tokenizer") / "tokenizer.json"


def _backend(name: str, request) -> Backend:
    """The tokenizer without its added tokens, as the build encodes source text."""
    return _plain(Tokenizer.load(_tokenizer_path(name, request)).backend)


def _source_texts(root: Path) -> list[str]:
    return [p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()]


@pytest.mark.parametrize("name", ["trained", "embedded", "deepseek"])
def test_ids_are_the_librarys_on_real_and_random_text(name, request, stdlib_sources):
    backend = _backend(name, request)
    texts = _source_texts(stdlib_sources)
    assert sum(not t.isascii() for t in texts) >= 3  # email/message.py, urllib/parse.py, sqlite3
    texts += _random_texts(ASCII + UNICODE * 3, 500, seed=3, longest=200)
    texts += ["", "\n", "<｜fim▁begin｜>x", "<|im_end|>", "ü" * 10_000]
    expected = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    encoder = TextEncoder(backend, dtype=np.uint32)
    assert encoder.fast
    got = encoder.encode(texts)
    assert all(g.dtype == np.uint32 for g in got)
    assert [g.tolist() for g in got] == expected
    again = encoder.encode(texts[::-1])  # from the cache this time
    assert [g.tolist() for g in again] == expected[::-1]
    small = TextEncoder(backend, max_words=50, max_chars=2000)  # the cache emptied over and over
    assert [g.tolist() for g in small.encode(texts)] == expected
    library = TextEncoder(backend, library=True)
    assert not library.fast and [g.tolist() for g in library.encode(texts)] == expected


def test_an_unknown_pre_tokenizer_is_encoded_by_the_library(request, stdlib_sources):
    backend = _backend("trained", request)
    backend.pre_tokenizer = pre_tokenizer_for("deepseek-llm")
    texts = _source_texts(stdlib_sources)[:20]
    encoder = TextEncoder(backend)
    assert not encoder.fast
    expected = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    assert [g.tolist() for g in encoder.encode(texts)] == expected


@pytest.mark.parametrize("library", [False, True])
def test_text_that_is_not_unicode_is_refused_by_name(library, request):
    backend = _backend("trained", request)
    encoder = TextEncoder(backend, library=library)
    with pytest.raises(ValueError, match=r"text 1 is not valid Unicode: surrogates not allowed at character 2"):
        encoder.encode(["fine", "ab\ud800c"])
    with pytest.raises(TypeError, match="text 0 is a bytes, not a str"):
        encoder.encode([b"def f(): pass"])
    assert [a.tolist() for a in encoder.encode(["x = 1"])] == [backend.encode("x = 1", add_special_tokens=False).ids]


def _reference_document(backend: Backend, mode: str, parts: list[list[Segment]], fim_ids, eos: int) -> list[int]:
    """The encoder before `dscoder.data.encode`: the library's ids per segment, laid out in lists."""
    token_parts = [[i for s in part for i in backend.encode(s.text, add_special_tokens=False).ids] for part in parts]
    if mode == "none":
        return token_parts[0] + [eos]
    begin, hole, end = fim_ids
    prefix, middle, suffix = token_parts
    if mode == "psm":
        return [begin, *prefix, hole, *suffix, end, *middle, eos]
    return [hole, *suffix, begin, *prefix, end, *middle, eos]


@pytest.mark.parametrize("name", ["trained", "deepseek"])
def test_fim_documents_equal_a_per_segment_library_encode(name, request, stdlib_sources):
    tokenizer = Tokenizer.load(_tokenizer_path(name, request))
    encoder = DocumentEncoder(tokenizer, need_fim=True)
    assert encoder.texts.fast
    backend = _plain(tokenizer.backend)
    modes = set()
    for repo in sorted(p for p in stdlib_sources.iterdir() if p.is_dir()):
        segments = [Segment(fim.file_block(str(f.relative_to(repo)), f.read_bytes().decode("utf-8", "replace")),
                            "Python" if f.suffix == ".py" else "Text") for f in sorted(repo.rglob("*")) if f.is_file()]
        mode, parts = fim.rewrite(segments, repo.name, seed=0, rate=0.7, spm_rate=0.5)
        modes.add(mode)
        ids, per_language = encoder.encode(mode, parts)
        assert ids.dtype == encoder.dtype
        assert ids.tolist() == _reference_document(backend, mode, parts, encoder.fim_ids, encoder.eos), repo.name
        assert sum(per_language.values()) == len(ids) - 1 - (3 if mode != "none" else 0)
    assert modes == {"none", "psm", "spm"}


# ---- builds ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Repositories of real code (stdlib packages, two with non-ASCII files), and one of planted odd text."""
    root = tmp_path_factory.mktemp("encode-sources")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json", "re", "sqlite3", "urllib", "html", "wsgiref"):
        shutil.copytree(stdlib / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "test*"))
    odd = root / "odd"
    odd.mkdir()
    (odd / "crlf.py").write_bytes(b"def f(x):\r\n    return x  # caf\xc3\xa9\r\n\r\nclass A:\r    pass\r")
    (odd / "unicode.py").write_text("s = '中文 한국어 ٣٤ ０１ Ⅻ'\u2028x = 1\u0085\ny = '😀' * 3  # «fin»…\n")
    (odd / "tokens.py").write_text("FIM = '<｜fim▁begin｜>'  # <|im_end|> <｜end▁of▁sentence｜>\n")
    (odd / "spaces.txt").write_text("a \t\x0b\x0c b\n\n\n   \n1 2  3\n")
    return root


def _build_bins(sources: Path, out: Path, tokenizer: str, fim_rate: float, library: bool) -> dict[str, bytes]:
    pipeline.build(pipeline.BuildConfig(
        sources=[str(sources)], out=str(out), tokenizer=tokenizer, split=True, fim_rate=fim_rate, spm_rate=0.3,
        seq_len=128, shard_sequences=64, val_fraction=0.2, decontaminate=False, workers=1, part_bytes=200_000,
        library_encode=library))
    bins = {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}
    manifest = json.loads((out / "manifest.json").read_text())
    bins["languages"] = json.dumps(manifest["languages"]).encode()
    return bins


@pytest.mark.parametrize("name", ["embedded", "deepseek"])
def test_build_shards_are_byte_identical_to_library_encode(name, request, sources, tmp_path):
    tokenizer = str(_tokenizer_path(name, request))
    fim_rate = 0.5 if name == "deepseek" else 0.0  # the embedded model has no FIM tokens
    assert TextEncoder(_plain(Tokenizer.load(tokenizer).backend)).fast
    fast = _build_bins(sources, tmp_path / "fast", tokenizer, fim_rate, library=False)
    library = _build_bins(sources, tmp_path / "library", tokenizer, fim_rate, library=True)
    assert len(fast) >= 4  # train and validation shards, several of them
    assert fast == library
