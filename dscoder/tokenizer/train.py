"""Training a new byte-level BPE vocabulary on source code, DeepSeek-Coder style.

The `tokenizers` library does the training; this module decides what it sees and what the
result looks like: the DeepSeek-Coder pre-tokenizer (letters, punctuation runs, CJK runs,
single digits and newlines kept apart), every byte of the 256-symbol byte-level alphabet so
no text is ever out of vocabulary, and the FIM and chat special tokens appended after the
learned vocabulary, as DeepSeek-Coder's own vocabulary places them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers, trainers

from dscoder.tokenizer.chat import DEEPSEEK_CODER_V1_TEMPLATE
from dscoder.tokenizer.tokenizer import Tokenizer, TokenizerError, pre_tokenizer_for

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
SPECIAL_TOKENS = [BOS, EOS, "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<pad>", "<|User|>",
                  "<|Assistant|>", "<|EOT|>"]
SKIPPED_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", "dist", "build"}


@dataclass
class CorpusStats:
    files: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def source_files(roots: list[Path]) -> list[Path]:
    """Every regular file under `roots`, minus version-control, dependency and build trees."""
    files = []
    for root in roots:
        if not root.is_dir():
            raise TokenizerError(f"{root} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
            files.extend(Path(dirpath) / name for name in sorted(filenames))
    return files


def source_texts(files: list[Path], stats: CorpusStats, max_file_bytes: int = 1 << 20) -> Iterator[str]:
    """Text of every source file, skipping what would teach the vocabulary noise (counted in `stats`)."""
    for path in files:
        if path.is_symlink() or not path.is_file():
            stats.skip("not a regular file")
            continue
        size = path.stat().st_size
        if size == 0 or size > max_file_bytes:
            stats.skip("empty or too large")
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            stats.skip("binary")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            stats.skip("not UTF-8")
            continue
        stats.files += 1
        stats.bytes += size
        yield text


def train_tokenizer(roots: list[str | Path], vocab_size: int, out: str | Path, pre: str = "deepseek-coder",
                    min_frequency: int = 2, show_progress: bool = True) -> tuple[Tokenizer, CorpusStats]:
    """Train on the files under `roots` and write tokenizer.json + tokenizer_config.json to `out`."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS) + 1:
        raise TokenizerError(f"vocab size {vocab_size} is too small: the byte alphabet ({len(alphabet)}) and "
                             f"the {len(SPECIAL_TOKENS)} special tokens alone need {len(alphabet) + len(SPECIAL_TOKENS)}")
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizer_for(pre)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), min_frequency=min_frequency,
                                  initial_alphabet=alphabet, show_progress=show_progress)
    stats = CorpusStats()
    files = source_files([Path(r) for r in roots])
    # Knowing the length lets the trainer draw its own progress bars (reading, counting pairs, merges).
    backend.train_from_iterator(source_texts(files, stats), trainer=trainer, length=len(files))
    if stats.files == 0:
        raise TokenizerError(f"no UTF-8 text files found under {', '.join(map(str, roots))} "
                             f"(skipped: {stats.skipped or 'nothing'})")
    backend.add_special_tokens(SPECIAL_TOKENS)  # after the learned vocabulary, as in DeepSeek-Coder
    tokenizer = Tokenizer.from_backend(backend, bos_token=BOS, eos_token=EOS, pad_token=EOS, add_bos=True,
                                       chat_template=DEEPSEEK_CODER_V1_TEMPLATE)
    tokenizer.save(out)
    return tokenizer, stats
