"""Instruction data for supervised fine-tuning: conversations as tokens plus a loss mask.

SFT trains the model to answer, not to ask: every token is fed in, but only the assistant's
tokens are targets. `read_sft` turns a JSONL file into `SftSample`s, each `tokens` and
`labels` of the same length where `labels[i]` is `tokens[i]` at a trained position and
`IGNORE` elsewhere. Labels are *unshifted*, as transformers' `labels=`: position `i`'s logits
are scored against `labels[i + 1]`.

A row is in one of two forms:

- **Chat**, OpenAI's `{"messages": [{"role": ..., "content": ...}, ...]}`: any number of turns,
  an optional system message. It is rendered with the model's own chat template (the one
  inference uses), and the text of assistant turn `i` is what
  `render(messages[:i+1], add_generation_prompt=False)` adds to
  `render(messages[:i], add_generation_prompt=True)`. A template for which the second does not
  start with the first (nor the next prompt with the conversation so far) is not prefix-stable:
  the answer cannot be located in it, and the line is refused rather than guessed at. Each part
  is tokenized on its own, prompt parts and answers apart, as inference does (the prompt is
  tokenized, then the model generates), with no BOS but the one the template writes as text.
  What the model is trained on in an answer ends with its last end-of-turn token (EOS, or
  `<|EOT|>` on DeepSeek-Coder V1): the newline a template writes after it is glue between
  turns that the model never generates (serving stops at that token), so it is prompt.
  Messages after the last assistant turn, and the template's text after its end-of-turn
  token, carry nothing to train and no context for anything trained: they are left out.
- **Instruction**, the official DeepSeek-Coder script's `{"instruction": ..., "output": ...}`.
  On a vocabulary with `<|EOT|>` (DeepSeek-Coder V1) it is built exactly as
  `finetune_deepseekcoder.py` builds it: the ids of `build_instruction_prompt(instruction) +
  output + "\\n<|EOT|>"` tokenized in one piece with the tokenizer's own BOS, the first
  `len(tokenize(prompt))` of them masked. On any other vocabulary the row is the conversation
  `[user: instruction, assistant: output]` through the chat template.

A bad line (not JSON, neither form, no assistant turn, a role or content the template cannot
take, a template that fails or is not prefix-stable) refuses the whole file, with one error
listing the bad lines: training on the rest would silently lose data the user believes is in
the run. Every line is read and checked before anything is refused, so one run of the command
names all of them (the first ten, and how many more).

Too long a sample keeps its start (as the official script's `truncation=True` does) and is
counted in `truncated`; one left with no trained token is dropped and counted in `dropped`.

`SftStream` is the order in which training sees the samples, with `RowStream`'s invariants
(dscoder/train/corpus.py): rows at global positions 0, 1, 2, ... that depend only on (data,
seed, seq_len, pack), never on the number of ranks; `next_batch(global_rows)` gives rank `r`
the contiguous slice `r*k .. (r+1)*k - 1` of the next `global_rows` positions and advances
every rank by the whole batch; a JSON-ready `state_dict` restores the exact position. Each
epoch reads the samples in the order `Generator(PCG64(SeedSequence([ORDER, seed,
epoch]))).permutation(samples)`. Packed, that order is concatenated greedily into rows of
exactly `seq_len` (a sample that does not fit the rest of a row starts the next one, which
leaves the rest padded; no sample is ever split), so the number of rows can differ from one
epoch to the next. Unpacked, each row is one sample, and a batch is padded to its longest
sample over the whole global batch (a multiple of 8, at most `seq_len`), so every rank gets
the same shape and the ranks' rows side by side are what one process gets.

In a batch, `segments` numbers the samples of each row 1, 2, ... (0 is padding) so the model
can keep attention inside a sample, and the label at the first token of every sample is
`IGNORE`: no sample is predicted from the one before it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from dscoder.errors import UserError
from dscoder.tokenizer.chat import ChatTemplateError, check_messages, render_chat, stop_token_ids, template_for
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.objective import Batch, IGNORE

__all__ = ["SftError", "SftSample", "SftData", "SftStream", "read_sft", "build_instruction_prompt"]

ORDER = 0x53465420  # 'SFT ': keeps this stream's permutations apart from the corpus streams'
STATE_VERSION = 1
SHOWN = 10  # bad lines named in the error; the rest are counted
EOT = "<|EOT|>"

# finetune_deepseekcoder.py's system prompt and Alpaca layout, word for word (its triple-quoted
# string begins with a newline that `.lstrip()` removes).
OFFICIAL_PROMPT = (
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer.\n"
    "### Instruction:\n{}\n### Response:\n")


class SftError(UserError):
    """Instruction data that cannot be trained on as given: bad lines in the file, settings that
    do not fit the samples, or a stream state that belongs to other data."""


def build_instruction_prompt(instruction: str) -> str:
    """The official script's prompt for one instruction (the text before the answer)."""
    return ("\n" + OFFICIAL_PROMPT.format(instruction.strip())).lstrip()


@dataclass
class SftSample:
    """One conversation, tokenized: `labels[i]` is `tokens[i]` where trained, else IGNORE (unshifted)."""

    tokens: list[int]
    labels: list[int]
    line: int  # 1-based line of the JSONL file; 0 for a document added with `add_documents`

    @property
    def targets(self) -> int:
        """Trained positions a model can predict: every one but the first (nothing comes before it)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass
class SftData:
    """The samples of an SFT run, with what was cut or left out on the way in."""

    samples: list[SftSample] = field(default_factory=list)
    truncated: int = 0  # samples cut to max_len (those then dropped included)
    dropped: int = 0  # samples left out: no trained token remained (after the cut, if any)
    max_len: int | None = None  # the cut applied to documents added later too

    def add(self, sample: SftSample) -> None:
        """Cut `sample` to `max_len` (keeping its start) and keep it if anything is left to train."""
        if self.max_len is not None and len(sample.tokens) > self.max_len:
            sample = SftSample(sample.tokens[:self.max_len], sample.labels[:self.max_len], sample.line)
            self.truncated += 1
        if sample.targets == 0:
            self.dropped += 1
            return
        self.samples.append(sample)

    def add_documents(self, docs: list[list[int]]) -> None:
        """Token lists trained whole (FIM documents from a code corpus, say): labels = tokens.
        All are checked before any is added, so a bad one leaves the data as it was."""
        checked = []
        for n, doc in enumerate(docs):
            try:
                tokens = [int(t) for t in doc]
            except (TypeError, ValueError):
                raise SftError(f"document {n} is not a list of token ids") from None
            if any(t < 0 for t in tokens):
                raise SftError(f"document {n} holds a negative token id")
            checked.append(tokens)
        for tokens in checked:
            self.add(SftSample(tokens, list(tokens), 0))


# ------------------------------------------------------------------------------ reading a file
class _BadLine(Exception):
    """Why one line cannot be used; collected, then reported with the others."""


def read_sft(path: str | os.PathLike, tokenizer: Tokenizer, max_len: int, template: str | None = None) -> SftData:
    """The samples of the JSONL file at `path` (see the module docstring for the two forms).

    `template` overrides the chat template (default: `template_for(tokenizer)`, the model's
    own). Raises SftError listing every bad line, and reads nothing, if any line is bad: we
    refuse rather than skip, so that no data is silently lost."""
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 2:
        raise SftError(f"max_len must be an integer of at least 2 (a prompt token and an answer token), "
                       f"not {max_len!r}")
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    builder = _Builder(tokenizer, template, path)
    data = SftData(max_len=max_len)
    bad: list[tuple[int, str]] = []
    rows = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue  # a blank line holds no row (a trailing newline, say): nothing is lost
        rows += 1
        try:
            sample = builder.sample(line, number)
        except _BadLine as e:
            bad.append((number, str(e)))
            continue
        if not bad:  # once the file is refused, only the checking matters
            data.add(sample)
    if rows == 0:
        raise SftError(f"{path} holds no rows; expected one JSON object per line, "
                       '{"messages": [...]} or {"instruction": ..., "output": ...}')
    if bad:
        listed = "\n".join(f"  line {n}: {why}" for n, why in bad[:SHOWN])
        more = f"\n  ... and {len(bad) - SHOWN} more bad lines" if len(bad) > SHOWN else ""
        raise SftError(f"{path}: {len(bad)} of {rows} rows cannot be used, so the file is refused as a whole "
                       f"(fix or remove them):\n{listed}{more}")
    return data


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _Builder:
    """Turns one line into a sample, or says why it cannot (`_BadLine`)."""

    def __init__(self, tokenizer: Tokenizer, template: str | None, path: str) -> None:
        self.tokenizer, self.path = tokenizer, path
        self._template = template
        self.official = tokenizer.token_to_id(EOT) is not None
        self.stops = set(stop_token_ids(tokenizer))

    def template(self, number: int) -> str:
        if self._template is None:
            try:
                self._template = template_for(self.tokenizer)
            except ChatTemplateError as e:  # the same for every chat row: one error, not a list
                raise SftError(f"{self.path}: line {number} needs a chat template: {e}") from None
        return self._template

    def sample(self, line: bytes, number: int) -> SftSample:
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise _BadLine(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise _BadLine(f"not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise _BadLine(f"a JSON {type(row).__name__}, not an object with 'messages' or 'instruction' and 'output'")
        if "messages" in row and ("instruction" in row or "output" in row):
            raise _BadLine("has both 'messages' and 'instruction'/'output'; a row is one form or the other")
        if "messages" in row:
            return self.conversation(row["messages"], number)
        if "instruction" in row or "output" in row:
            instruction, output = row.get("instruction"), row.get("output")
            for name, value in (("instruction", instruction), ("output", output)):
                if not isinstance(value, str):
                    raise _BadLine(f"'{name}' must be a string, not {type(value).__name__}"
                                   if value is not None else f"an instruction row without '{name}'")
            if self.official:
                return self.official_sample(instruction, output, number)
            return self.conversation([{"role": "user", "content": instruction},
                                      {"role": "assistant", "content": output}], number)
        keys = ", ".join(repr(k) for k in list(row)[:5]) or "none"
        raise _BadLine(f"neither form: expected {{\"messages\": [...]}} or {{\"instruction\": ..., \"output\": ...}}, "
                       f"found keys {_short(keys, 80)}")

    def official_sample(self, instruction: str, output: str, number: int) -> SftSample:
        """finetune_deepseekcoder.py's `preprocess`: the whole text in one piece, the prompt's share masked."""
        source = build_instruction_prompt(instruction)
        tokens = self.tokenizer.encode(source + f"{output}\n{EOT}")
        masked = len(self.tokenizer.encode(source))
        return SftSample(tokens, [IGNORE] * masked + tokens[masked:], number)

    def conversation(self, messages: Any, number: int) -> SftSample:
        try:
            check_messages(messages)
        except ChatTemplateError as e:
            raise _BadLine(_short(str(e))) from None
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not answers:
            raise _BadLine("a conversation without an assistant turn: nothing to train on")
        if answers[0] == 0:
            raise _BadLine("the conversation starts with an assistant turn: nothing prompts it")
        template = self.template(number)
        tokens: list[int] = []
        labels: list[int] = []
        so_far = ""  # the rendering of the conversation through the previous answer
        for i in answers:
            prompt = self.render(messages[:i], template, True)
            if not prompt.startswith(so_far):
                raise _BadLine(f"the chat template is not prefix-stable: the prompt for message {i} (assistant) "
                               f"does not start with the conversation rendered through message {i - 1}, "
                               "so the answers cannot be located")
            whole = self.render(messages[:i + 1], template, False)
            if not whole.startswith(prompt):
                raise _BadLine(f"the chat template is not prefix-stable: the conversation through message {i} "
                               "(assistant) does not start with its prompt rendered with add_generation_prompt, "
                               "so the answer cannot be located")
            part = self.tokenizer.encode(prompt[len(so_far):], add_bos=False)
            tokens += part
            labels += [IGNORE] * len(part)
            answer = self.tokenizer.encode(whole[len(prompt):], add_bos=False)
            ends = [j for j, t in enumerate(answer) if t in self.stops]
            trained = ends[-1] + 1 if ends else len(answer)
            tokens += answer
            labels += answer[:trained] + [IGNORE] * (len(answer) - trained)
            so_far = whole
        # What follows the last end-of-turn token (the template's newline) conditions no target.
        trained = [j for j, label in enumerate(labels) if label != IGNORE]
        end = trained[-1] + 1 if trained else len(tokens)
        return SftSample(tokens[:end], labels[:end], number)

    def render(self, messages: list, template: str, add_generation_prompt: bool) -> str:
        try:
            return render_chat(messages, template, bos_token=self.tokenizer.bos_token or "",
                               eos_token=self.tokenizer.eos_token or "", add_generation_prompt=add_generation_prompt)
        except ChatTemplateError as e:
            raise _BadLine(_short(str(e))) from None


# ------------------------------------------------------------------------------ batches
def _round8(n: int) -> int:
    return -(-n // 8) * 8


class SftStream:
    """The deterministic, resumable, rank-sharded order of SFT rows (see the module docstring)."""

    def __init__(self, data: SftData, seq_len: int, pack: bool, seed: int, rank: int = 0, world_size: int = 1,
                 pad_id: int = 0) -> None:
        if not isinstance(seq_len, int) or seq_len < 2:
            raise SftError(f"seq_len must be an integer of at least 2, not {seq_len!r}")
        if not isinstance(seed, int) or seed < 0:
            raise SftError(f"the data seed must be a non-negative integer, not {seed!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise SftError(f"rank {rank} is not in a world of {world_size}")
        if not isinstance(pad_id, int) or pad_id < 0:
            raise SftError(f"pad_id must be a non-negative token id, not {pad_id!r}")
        self.samples = list(data.samples)  # later additions to `data` do not move this stream
        if not self.samples:
            raise SftError("no SFT sample to train on (every row was dropped, or the data is empty)")
        long = [(s.line, len(s.tokens)) for s in self.samples if len(s.tokens) > seq_len]
        if long:
            named = ", ".join(f"{'line ' + str(n) if n else 'a document'} ({t} tokens)" for n, t in long[:SHOWN])
            raise SftError(f"{len(long)} samples are longer than seq_len {seq_len}: {named}; "
                           f"read the data with max_len <= {seq_len}")
        self.data = data
        self.seq_len, self.pack, self.seed = seq_len, bool(pack), seed
        self.rank, self.world_size, self.pad_id = rank, world_size, pad_id
        self._lengths = np.array([len(s.tokens) for s in self.samples], dtype=np.int64)
        self.position = 0
        self._epoch = 0
        self._cursor = 0  # rows of the current epoch already given out
        self._layouts: dict[int, list[list[int]]] = {}

    # ---- the order -------------------------------------------------------------------------

    def _layout(self, epoch: int) -> list[list[int]]:
        """The rows of `epoch`, each the sample indices it holds, in order."""
        rows = self._layouts.get(epoch)
        if rows is None:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([ORDER, self.seed, epoch])))
            order = rng.permutation(len(self.samples)).tolist()
            if not self.pack:
                rows = [[i] for i in order]
            else:
                rows, row, used = [], [], 0
                for i in order:
                    n = int(self._lengths[i])
                    if used + n > self.seq_len:
                        rows.append(row)
                        row, used = [], 0
                    row.append(i)
                    used += n
                rows.append(row)
            if len(self._layouts) >= 2:  # the current epoch and the next suffice
                self._layouts.pop(min(self._layouts))
            self._layouts[epoch] = rows
        return rows

    def rows_in_epoch(self, epoch: int) -> int:
        """Rows epoch `epoch` has: the number of samples unpacked; packed, it depends on the epoch's order."""
        return len(self.samples) if not self.pack else len(self._layout(epoch))

    @property
    def rows_per_epoch(self) -> int:
        """Rows of the current epoch (packed, the next epoch may have a few more or fewer)."""
        return self.rows_in_epoch(self._epoch)

    @property
    def epoch(self) -> int:
        """Completed passes over the samples (0 during the first)."""
        return self._epoch

    # ---- reading -----------------------------------------------------------------------------

    def next_batch(self, rows: int) -> Batch:
        """This rank's share of the next `rows` global positions, `rows // world_size` rows:
        positions `rank*k .. (rank+1)*k-1` of the batch. Every rank advances by the whole batch."""
        if not isinstance(rows, int) or rows <= 0 or rows % self.world_size:
            raise SftError(f"a global batch of {rows} rows does not split over {self.world_size} ranks")
        k = rows // self.world_size
        entries, epoch, cursor = [], self._epoch, self._cursor
        for _ in range(rows):
            layout = self._layout(epoch)
            entries.append(layout[cursor])
            cursor += 1
            if cursor == len(layout):
                epoch, cursor = epoch + 1, 0
        if self.pack:
            width = self.seq_len
        else:  # over the global batch: the same shape on every rank, whatever the world size
            width = min(self.seq_len, _round8(max(int(self._lengths[e[0]]) for e in entries)))
        tokens = np.full((k, width), self.pad_id, dtype=np.int64)
        labels = np.full((k, width), IGNORE, dtype=np.int64)
        segments = np.zeros((k, width), dtype=np.int64)
        for r, entry in enumerate(entries[self.rank * k:(self.rank + 1) * k]):
            at = 0
            for number, i in enumerate(entry, start=1):
                sample = self.samples[i]
                n = len(sample.tokens)
                tokens[r, at:at + n] = sample.tokens
                labels[r, at + 1:at + n] = sample.labels[1:]  # the first is never predicted from what precedes
                segments[r, at:at + n] = number
                at += n
        self.position += rows
        self._epoch, self._cursor = epoch, cursor
        return Batch(torch.from_numpy(tokens), torch.from_numpy(labels), torch.from_numpy(segments))

    # ---- what it holds -----------------------------------------------------------------------

    def describe(self, batch_rows: int = 1) -> dict:
        """Counts for the log. `padding_fraction` is that of the current epoch's rows: packed,
        the unused end of each row; unpacked, the padding of batches of `batch_rows` global rows
        taken from the start of the epoch (1: only the rounding up to a multiple of 8)."""
        if not isinstance(batch_rows, int) or batch_rows <= 0:
            raise SftError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        layout = self._layout(self._epoch)
        tokens = int(self._lengths.sum())
        if self.pack:
            slots = len(layout) * self.seq_len
        else:
            lengths = [int(self._lengths[e[0]]) for e in layout]
            slots = sum(min(self.seq_len, _round8(max(chunk))) * len(chunk)
                        for chunk in (lengths[s:s + batch_rows] for s in range(0, len(lengths), batch_rows)))
        return {"samples": len(self.samples), "trained_tokens": sum(s.targets for s in self.samples),
                "tokens": tokens, "truncated": self.data.truncated, "dropped": self.data.dropped,
                "rows_per_epoch": len(layout), "padding_fraction": 1.0 - tokens / slots}

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of every sample's tokens and labels, in order: which data a state belongs to."""
        digest = hashlib.sha256()
        for s in self.samples:
            digest.update(np.array([len(s.tokens)], dtype="<i8").tobytes())
            digest.update(np.asarray(s.tokens, dtype="<i8").tobytes())
            digest.update(np.asarray(s.labels, dtype="<i8").tobytes())
        return digest.hexdigest()[:32]

    # ---- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The stream's position and what it means; plain JSON-ready values, the same on every rank."""
        return {"version": STATE_VERSION, "kind": "sft", "position": self.position, "epoch": self._epoch,
                "cursor": self._cursor, "seed": self.seed, "seq_len": self.seq_len, "pack": self.pack,
                "samples": len(self.samples), "tokens": int(self._lengths.sum()), "fingerprint": self.fingerprint}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from `state`, refusing one written by a stream over other samples, or with
        another seed, seq_len or packing (the rows it would give are not the ones that were next)."""
        try:
            position, epoch, cursor = int(state["position"]), int(state["epoch"]), int(state["cursor"])
            seed, seq_len, pack = state["seed"], state["seq_len"], state["pack"]
            samples, tokens, fingerprint = state["samples"], state["tokens"], state["fingerprint"]
            version, kind = state.get("version"), state.get("kind")
        except (KeyError, TypeError, ValueError) as e:
            raise SftError(f"not an SFT stream state (missing or malformed {e})") from None
        if kind != "sft":
            raise SftError(f"the data stream state is of kind {kind!r}, not an SFT stream's")
        if version != STATE_VERSION:
            raise SftError(f"SFT stream state version {version!r}; this dscoder reads version {STATE_VERSION}")
        diffs = []
        if (samples, tokens) != (len(self.samples), int(self._lengths.sum())) or fingerprint != self.fingerprint:
            diffs.append(f"{samples} samples of {tokens} tokens, fingerprint {fingerprint} (this stream: "
                         f"{len(self.samples)} samples of {int(self._lengths.sum())} tokens, fingerprint "
                         f"{self.fingerprint}; the data file, tokenizer or max_len changed?)")
        if seed != self.seed:
            diffs.append(f"seed {seed} (this stream: {self.seed})")
        if seq_len != self.seq_len:
            diffs.append(f"seq_len {seq_len} (this stream: {self.seq_len})")
        if pack != self.pack:
            diffs.append(f"pack {pack} (this stream: {self.pack})")
        if diffs:
            raise SftError("the data stream state is from another stream: " + "; ".join(diffs))
        if epoch < 0 or not 0 <= cursor < self.rows_in_epoch(epoch):
            raise SftError(f"SFT stream state has an impossible cursor {cursor} in epoch {epoch}")
        before = epoch * len(self.samples) if not self.pack else sum(self.rows_in_epoch(e) for e in range(epoch))
        if before + cursor != position:
            raise SftError(f"SFT stream state is inconsistent: position {position} but {before + cursor} rows drawn")
        self.position, self._epoch, self._cursor = position, epoch, cursor
