"""Text <-> token ids for DeepSeek-Coder and other byte-level BPE models, on HF `tokenizers`.

A model reaches us either as a Hugging Face directory (`tokenizer.json` +
`tokenizer_config.json`) or as a GGUF file, which carries no `tokenizer.json` but the
vocabulary, merges and token types as metadata (`dscoder.formats.gguf.read_vocabulary`
reads them).  Both end up as one `tokenizers.Tokenizer` (the Rust BPE, not a hand-written
one), wrapped with what a generation loop needs: the BOS/EOS/pad tokens, whether the model
wants a BOS, its chat template, and a streaming decoder.

Rebuilding a GGUF tokenizer so that it gives the ids the original one gave takes three
things that llama.cpp keeps outside the vocabulary:

* The pre-tokenizer, named by `tokenizer.ggml.pre`.  llama.cpp hard-codes one list of
  regexes per name (`src/llama-vocab.cpp`); each regex splits every piece left by the
  previous ones and keeps both the matches and the text between them, which is exactly
  a `Split(behavior="isolated")`.  `pre_tokenizer_for` holds those definitions.
* Token types.  CONTROL tokens (BOS/EOS, `<|im_end|>`) become special added tokens,
  USER_DEFINED ones (`<|EOT|>`, the FIM tokens) plain added tokens; both are matched
  literally in the raw text before any splitting (`normalized=False`), as llama.cpp and
  the original HF tokenizers do.  The `[PAD{id}]` placeholders llama.cpp's converter writes
  to fill the embedding matrix up to its size are not added tokens: the original tokenizer
  never had them, so they stay unreachable vocabulary entries.
* Ids.  Every GGUF token goes into the BPE vocabulary under its own id, and an added token
  whose text is already in the vocabulary keeps that id, so nothing is renumbered.

DeepSeek's 13 USER_DEFINED tokens 'õ', '÷', 'Á', ... spell the 13 bytes that never occur
in UTF-8 (0xC0, 0xC1, 0xF5-0xFF) in the byte-level alphabet.  Because added tokens are
matched on the raw text, "Führer" encodes as F, 'ü' (32009), h, rer, and the byte-level
decoder would turn 32009 back into the lone byte 0xFC, i.e. U+FFFD.  We decode added
tokens as their own text instead (as llama.cpp does), so decode(encode(x)) == x.  For
that reason, and so that streaming provably agrees with it, `decode` does not call the
backend's decoder: every id maps to a fixed byte string, and the text is those bytes
decoded as UTF-8 (invalid bytes become U+FFFD).
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as _Backend

from dscoder.errors import UserError
from dscoder.formats.gguf import CONTROL, USER_DEFINED, GGUFError, read_vocabulary

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "pre_tokenizer_for", "PRE_TOKENIZERS"]


class TokenizerError(UserError):
    """A tokenizer (directory, tokenizer.json, tokenizer_config.json or GGUF) cannot be used as asked."""


# ------------------------------------------------------------------------------ pre-tokenizers
def _ranges(*spans: tuple[int, ...]) -> str:
    """A regex character-class body from code points, written as \\x{...} escapes.

    The DeepSeek-LLM class contains characters (OHM SIGN, KELVIN SIGN, Greek with dialytika
    and tonos) that Unicode normalization replaces by others; a class typed as literal
    characters silently turns into empty or wrong ranges once an editor normalizes it.
    """
    return "".join("\\x{%X}" % s[0] if len(s) == 1 else "\\x{%X}-\\x{%X}" % s for s in spans)


# CJK ideographs, everything from Samaritan up to them, and Hangul syllables: one run each.
_CJK = _ranges((0x4E00, 0x9FA5), (0x0800, 0x4E00), (0xAC00, 0xD7FF))
# DeepSeek-LLM's "letters": the cased letters (Lu, Ll, Lt) of the Unicode version its
# tokenizer was built with, minus a few scripts (Armenian lower case, Georgian Mkhedruli...).
_DEEPSEEK_LLM_LETTERS = _ranges(
    (0x41, 0x5A), (0x61, 0x7A), (0xB5,), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF),
    (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377), (0x37B, 0x37D), (0x37F,), (0x386,),
    (0x388, 0x38A), (0x38C,), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F),
    (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA),
    (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15),
    (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59,), (0x1F5B,),
    (0x1F5D,), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE,), (0x1FC2, 0x1FC4),
    (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4),
    (0x1FF6, 0x1FFC), (0x2102,), (0x2107,), (0x210A, 0x2113), (0x2115,), (0x2119, 0x211D), (0x2124,),
    (0x2126,), (0x2128,), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139,), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E,), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE),
    (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787),
    (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A),
    (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2),
    (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943),
)
# ASCII punctuation and symbols, their full-width forms, curly quotes, ideographic space/comma/stop.
_DEEPSEEK_LLM_PUNCT = _ranges((0x21, 0x2F), (0x3A, 0x7E), (0xFF01, 0xFF0F), (0xFF1A, 0xFF5E),
                              (0x2018, 0x201F), (0x3000, 0x3002))

# Regexes applied one after another, each splitting every piece the previous ones left
# (llama.cpp's `regex_exprs` for the name); then bytes are mapped to the byte-level alphabet.
_SPLITS: dict[str, tuple[str, ...]] = {
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", f"[{_CJK}]+", r"\p{N}"),
    "deepseek-llm": (r"[\r\n]", rf"\s?[{_DEEPSEEK_LLM_LETTERS}]+", rf"\s?[{_DEEPSEEK_LLM_PUNCT}]+",
                     r"\s+$", f"[{_CJK}]+", r"\p{N}+"),
}
PRE_TOKENIZERS = ("deepseek-coder", "deepseek-llm", "smollm", "gpt2", "default")


def pre_tokenizer_for(name: str) -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer llama.cpp's `tokenizer.ggml.pre` name stands for.

    "gpt2" and "default" are GPT-2's own regex; "smollm" is that after splitting every
    digit off on its own (as SmolLM's tokenizer.json does).
    """
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in ("gpt2", "default"):
        return byte_level
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name in _SPLITS:
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in _SPLITS[name]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise TokenizerError(f"unknown pre-tokenizer {name!r} (supported: {', '.join(PRE_TOKENIZERS)})")


# ------------------------------------------------------------------------------ byte-level alphabet
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable stand-in character of each byte back to the byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(0x100 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


_CHAR_TO_BYTE = _byte_alphabet()
_TO_LATIN1 = str.maketrans({c: chr(b) for c, b in _CHAR_TO_BYTE.items()})
_OUTSIDE_ALPHABET = re.compile("[^" + "".join(re.escape(c) for c in _CHAR_TO_BYTE) + "]")


def _token_bytes(token: str) -> bytes:
    """What the byte-level decoder makes of one vocabulary token.

    A token with any character outside the alphabet cannot have come from the byte-level
    BPE; like `tokenizers`' ByteLevel decoder, we then take its text as it is.
    """
    if _OUTSIDE_ALPHABET.search(token):
        return token.encode("utf-8")
    return token.translate(_TO_LATIN1).encode("latin-1")


# ------------------------------------------------------------------------------ the tokenizer
class Tokenizer:
    """A `tokenizers.Tokenizer` plus the model's special tokens, BOS default and chat template."""

    def __init__(self, backend: _Backend, *, bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None, add_bos: bool = False, chat_template: str | None = None,
                 model_max_length: int | None = None, source: str = "tokenizer") -> None:
        self.backend = backend
        self.source = source
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.bos_id = self._special_id(bos_token, "bos_token")
        self.eos_id = self._special_id(eos_token, "eos_token")
        self.pad_id = self._special_id(pad_token, "pad_token")
        self.add_bos = bool(add_bos)
        self.chat_template = chat_template
        self.model_max_length = model_max_length
        # Added tokens may sit past a gap in the ids; every id up to the last one counts.
        self.vocab_size = max(backend.get_vocab_size(with_added_tokens=True),
                              max(backend.get_added_tokens_decoder(), default=-1) + 1)
        if not isinstance(backend.decoder, decoders.ByteLevel):
            # decode and streaming rely on each id standing for fixed bytes (see module docstring).
            raise TokenizerError(f"{source}: decoder {type(backend.decoder).__name__} is not byte-level; "
                                 "only byte-level BPE tokenizers are supported")

    def _special_id(self, token: str | None, name: str) -> int | None:
        if token is None:
            return None
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"{self.source}: {name} {token!r} is not in the vocabulary")
        return token_id

    def __repr__(self) -> str:
        return (f"Tokenizer({self.source!r}, vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
                f"eos={self.eos_token!r}, add_bos={self.add_bos})")

    # -------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """A model directory, a tokenizer.json file, or a .gguf file."""
        path = Path(path)
        if path.is_dir():
            return cls.from_dir(path)
        if not path.is_file():
            raise TokenizerError(f"{path} does not exist")
        if path.suffix == ".gguf" or _starts_with(path, b"GGUF"):
            return cls.from_gguf(path)
        return cls._from_files(path, path.parent / "tokenizer_config.json")

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "Tokenizer":
        """A Hugging Face model directory: tokenizer.json, and tokenizer_config.json if present."""
        path = Path(path)
        return cls._from_files(path / "tokenizer.json", path / "tokenizer_config.json")

    @classmethod
    def _from_files(cls, tokenizer_json: Path, config_json: Path) -> "Tokenizer":
        if not tokenizer_json.is_file():
            raise TokenizerError(f"{tokenizer_json} is missing")
        try:
            backend = _Backend.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for bad JSON or an unknown layout
            raise TokenizerError(f"{tokenizer_json} cannot be read as a tokenizers file ({exc})") from exc
        # Both are optional: a bare tokenizer.json is a complete tokenizer, just without defaults.
        config = _read_json(config_json) if config_json.exists() else {}
        specials_json = config_json.parent / "special_tokens_map.json"  # older directories keep bos/eos here
        specials = _read_json(specials_json) if specials_json.exists() else {}

        def token(name: str) -> str | None:
            where = config_json if name in config else specials_json
            value = config.get(name, specials.get(name))
            if isinstance(value, dict):  # {"content": ..., "__type": "AddedToken", ...}
                value = value.get("content")
            if value is not None and not isinstance(value, str):
                raise TokenizerError(f"{where}: {name} must be a string or an AddedToken dict, "
                                     f"not {type(value).__name__}")
            if value is not None and backend.token_to_id(value) is None:
                raise TokenizerError(f"{where}: {name} {value!r} is not in the vocabulary of {tokenizer_json}")
            return value

        bos = token("bos_token")
        add_bos = config.get("add_bos_token")
        if add_bos is None:
            # No explicit setting: the tokenizer.json post-processor decides, as in transformers.
            add_bos = bos is not None and backend.encode("", add_special_tokens=True).ids[:1] == \
                [backend.token_to_id(bos)]
        elif not isinstance(add_bos, bool):
            raise TokenizerError(f"{config_json}: add_bos_token must be true or false, not {add_bos!r}")
        max_length = config.get("model_max_length")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length >= 10**29:
            max_length = None  # transformers writes int(1e30) for "no limit"
        return cls(backend, bos_token=bos, eos_token=token("eos_token"), pad_token=token("pad_token"),
                   add_bos=add_bos, chat_template=_chat_template(config, config_json),
                   model_max_length=max_length, source=str(tokenizer_json))

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> "Tokenizer":
        """The byte-level BPE tokenizer a GGUF file describes (`tokenizer.ggml.model` = gpt2)."""
        path = os.fspath(path)
        try:
            vocab = read_vocabulary(path)
        except GGUFError as exc:
            raise TokenizerError(str(exc)) from exc
        tokens = vocab.tokens
        if vocab.model != "gpt2":
            kind = " (SentencePiece)" if vocab.model == "llama" else ""
            raise TokenizerError(f"{path}: tokenizer model {vocab.model!r}{kind} is not supported; only byte-level "
                                 "BPE ('gpt2', as DeepSeek-Coder and SmolLM use) is")
        if not vocab.merges:
            raise TokenizerError(f"{path}: byte-level BPE vocabulary without 'tokenizer.ggml.merges'")
        ids = {token: i for i, token in enumerate(tokens)}
        if len(ids) != len(tokens):
            seen: set[str] = set()
            dup = next(t for t in tokens if t in seen or seen.add(t))
            raise TokenizerError(f"{path}: token {dup!r} appears more than once in 'tokenizer.ggml.tokens'")

        try:  # llama.cpp also falls back to "default" when a file names none
            pre_tokenizer = pre_tokenizer_for(vocab.pre)
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: 'tokenizer.ggml.pre' names an {exc}") from None
        backend = _Backend(models.BPE(vocab=ids, merges=_split_merges(vocab.merges, path)))
        backend.pre_tokenizer = pre_tokenizer
        backend.decoder = decoders.ByteLevel()
        control = [tokens[i] for i, kind in enumerate(vocab.token_types) if kind == CONTROL]
        user = [tokens[i] for i, kind in enumerate(vocab.token_types)
                if kind == USER_DEFINED and tokens[i] != f"[PAD{i}]"]
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])

        def special(token_id: int | None) -> str | None:
            return None if token_id is None else tokens[token_id]

        return cls.from_backend(backend, bos_token=special(vocab.bos_id), eos_token=special(vocab.eos_id),
                                pad_token=special(vocab.pad_id), add_bos=vocab.add_bos,
                                chat_template=vocab.chat_template, model_max_length=vocab.context_length,
                                source=path)

    @classmethod
    def from_backend(cls, backend: _Backend, *, bos_token: str | None = None, eos_token: str | None = None,
                     pad_token: str | None = None, add_bos: bool = False, chat_template: str | None = None,
                     model_max_length: int | None = None, source: str = "tokenizer") -> "Tokenizer":
        """Wrap a `tokenizers.Tokenizer` built in memory (converted from GGUF, freshly trained...).

        A backend without a post-processor gets one that adds BOS when `add_bos` is set, so
        that its own `encode(..., add_special_tokens=True)` agrees with ours.
        """
        tokenizer = cls(backend, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token, add_bos=add_bos,
                        chat_template=chat_template, model_max_length=model_max_length, source=source)
        if backend.post_processor is None and tokenizer.add_bos and tokenizer.bos_id is not None:
            backend.post_processor = _bos_template(tokenizer.bos_token, tokenizer.bos_id)
        return tokenizer

    # -------------------------------------------------------------------------- encode / decode
    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; special-token strings in it are recognised. add_bos None: the model's default."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if self.add_bos if add_bos is None else add_bos:
            if self.bos_id is None:
                raise TokenizerError(f"{self.source} has no BOS token to add")
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._bytes(ids, skip_special_tokens).decode("utf-8", "replace")

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(i) if 0 <= i < self.vocab_size else None

    def stream(self, skip_special_tokens: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, skip_special_tokens)

    def _bytes(self, ids: Iterable[int], skip_special_tokens: bool) -> bytes:
        ids = [int(i) for i in ids]  # also numpy / torch integers
        self._check_ids(ids)
        table = self._skip_table if skip_special_tokens else self._byte_table
        return b"".join(map(table.__getitem__, ids))

    def _check_ids(self, ids: list[int]) -> None:
        if ids and not (0 <= min(ids) and max(ids) < self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise TokenizerError(f"token id {bad} is outside the vocabulary of {self.vocab_size} ({self.source})")

    @functools.cached_property
    def _byte_table(self) -> list[bytes]:
        """The bytes every id stands for: byte-level tokens decoded, added tokens as their UTF-8 text."""
        table = [b""] * self.vocab_size
        for token, i in self.backend.get_vocab(with_added_tokens=False).items():
            table[i] = _token_bytes(token)
        for i, added in self.backend.get_added_tokens_decoder().items():
            table[i] = added.content.encode("utf-8")
        return table

    def byte_lengths(self) -> list[int]:
        """Bytes of text each id stands for, special tokens 0: the denominator of bits per byte,
        a loss that compares models with different tokenizers."""
        return [len(b) for b in self._skip_table]

    @functools.cached_property
    def _skip_table(self) -> list[bytes]:
        table = list(self._byte_table)
        for i, added in self.backend.get_added_tokens_decoder().items():
            if added.special:
                table[i] = b""
        return table

    # -------------------------------------------------------------------------- saving
    def save(self, directory: str | os.PathLike) -> Path:
        """tokenizer.json + tokenizer_config.json, loadable by `Tokenizer.load` and transformers' AutoTokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # transformers adds BOS only through the tokenizer.json post-processor (it ignores
        # add_bos_token), so the saved one adds exactly what `encode` adds: BOS or nothing.
        # A ByteLevel post-processor only trims offsets and is kept.
        current = self.backend.post_processor
        keep = [current] if isinstance(current, processors.ByteLevel) else []
        if self.add_bos and self.bos_id is not None:
            keep.insert(0, _bos_template(self.bos_token, self.bos_id))
        try:
            self.backend.post_processor = keep[0] if len(keep) == 1 else processors.Sequence(keep) if keep else None
            self.backend.save(str(directory / "tokenizer.json"))
        finally:
            self.backend.post_processor = current
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        }
        for name in ("bos_token", "eos_token", "pad_token"):
            if getattr(self, name) is not None:
                config[name] = getattr(self, name)
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        config["added_tokens_decoder"] = {
            str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special}
            for i, t in sorted(self.backend.get_added_tokens_decoder().items())
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
        return directory


class StreamDecoder:
    """Turns ids arriving one at a time into text, never emitting half a UTF-8 character.

    Each id stands for fixed bytes (see `Tokenizer._byte_table`), so feeding them through
    one incremental UTF-8 decoder yields, piece by piece, exactly what `decode` gives for the
    whole sequence: "".join(push(i) for i in ids) + flush() == tokenizer.decode(ids).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._table = tokenizer._skip_table if skip_special_tokens else tokenizer._byte_table
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes (possibly "")."""
        token_id = int(token_id)
        if not 0 <= token_id < len(self._table):
            self._tokenizer._check_ids([token_id])
        return self._utf8.decode(self._table[token_id])

    def flush(self) -> str:
        """Whatever bytes are still pending (an unfinished character becomes U+FFFD); resets the decoder."""
        return self._utf8.decode(b"", final=True)


# ------------------------------------------------------------------------------ helpers
def _bos_template(bos: str, bos_id: int) -> processors.TemplateProcessing:
    """BOS before each sequence, as Llama's tokenizers add it."""
    return processors.TemplateProcessing(single=[bos, "$A:0"], pair=[bos, "$A:0", f"{bos}:1", "$B:1"],
                                         special_tokens=[(bos, bos_id)])


def _split_merges(merges: list[str], path: str) -> list[tuple[str, str]]:
    """'a b' -> ('a', 'b'), splitting at the first space after the first character, as llama.cpp does."""
    pairs = []
    for i, merge in enumerate(merges):
        cut = merge.find(" ", 1)
        if cut < 0:
            raise TokenizerError(f"{path}: merge {i} ({merge!r}) in 'tokenizer.ggml.merges' is not two tokens")
        pairs.append((merge[:cut], merge[cut + 1:]))
    return pairs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TokenizerError(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _chat_template(config: dict[str, Any], config_json: Path) -> str | None:
    """chat_template.jinja (where transformers now saves it), else tokenizer_config's entry.

    The entry is a string, or a list of {"name", "template"} of which "default" is the one
    used when no name is asked for.
    """
    jinja = config_json.parent / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"{jinja} cannot be read as UTF-8 text ({exc})") from exc
    template = config.get("chat_template")
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, list) and all(isinstance(t, dict) and "name" in t and "template" in t for t in template):
        named = {t["name"]: t["template"] for t in template}
        return named.get("default")
    raise TokenizerError(f"{config_json}: chat_template must be a string or a list of "
                         "{\"name\": ..., \"template\": ...}")


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic
