"""`dscoder train reward-model`: a scalar reward model trained on sandbox-labelled GRPO samples.

DeepSeek-Coder-V2 (arXiv 2406.11931, section 3.5.2) did not give GRPO the raw compiler/test
signal: it trained a reward model on samples labelled by the compiler and the tests and used
the model's score as the reward, because a problem's few tests are a noisy, sparse verdict and a
learned score generalises past them. This module is that piece for our runs.

Data: `RUN/samples.jsonl` of `dscoder train grpo`, one object per generated sample (prompt with
the chat template already applied, completion, sandbox category, tests passed / total). Several
runs' files may be given. `sandbox_error` rows are dropped (counted): they say the machine
failed, not the code, so any label on them would teach noise.

The network: the policy's own architecture and weights (`RewardModel`), its output head replaced
by `nn.Identity()` so the backbone returns the final-norm hidden states, and one linear layer
`score` (hidden -> 1) read at each sequence's last real token (sequences are right-padded, and
attention is causal, so padding never reaches that position).

Loss: pointwise binary cross-entropy with logits against each sample's own label, not a
pairwise Bradley-Terry loss on pairs within a prompt. The sandbox's labels are absolute
(this sample passed or did not), not preferences; and for a weak policy most prompts' groups
are all-fail (or, for easy problems, all-pass), so pairs of differing outcomes within one
prompt are rare: a pairwise loss would discard every such group, most of the data. Passes are
the minority class, so the positive term is weighted by `pos_weight` = negatives / positives of
the training split (BCE's own `pos_weight`): both classes weigh the same in the loss, and a
model cannot lower it by scoring everything "fail".

The split holds out whole prompts (a seeded hash of `task_id`), so the held-out accuracy and AUC
measure the model on problems it never saw, which is what a reward for new rollouts needs.

What `train_reward_model` writes (built beside OUT and renamed into place when complete, so a
failure or a kill leaves no OUT, never half of one; its metrics are therefore written at the
end too): the backbone as an HF checkpoint (LoRA merged; the policy's own output head kept, so
the directory is also a loadable model), `score.safetensors` (the head), `reward_model.json`
(settings, label kind, counts, metrics), `metrics.jsonl`, `reward_model.png` and the tokenizer.
`RewardScorer.load(OUT)` reads it back and scores (prompt, completion) pairs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from dscoder.errors import CheckpointError, UserError
from dscoder.settings import MISSING, as_dict, setting

# The categories `dscoder.train.rewards` gives a sample (kept equal to its CATEGORIES; a test checks).
CATEGORIES = ("passed", "failed", "syntax_error", "timeout", "no_code", "refused", "sandbox_error")
LABELS = ("passed", "fraction")
FORMAT = "dscoder-reward-model"
INFO_FILE = "reward_model.json"
HEAD_FILE = "score.safetensors"
_SHOWN_BAD_LINES = 10  # bad lines listed in one error (the count says how many more)


class RewardModelError(UserError):
    """The samples, the settings or the output directory of a reward-model run cannot be used as given."""


@dataclass
class RewardModelConfig:
    """Settings of `dscoder train reward-model` (the command line shows each field's help)."""

    samples: str = setting(MISSING, "GRPO samples to learn from: RUN/samples.jsonl files (or RUN directories), "
                                    "several as PATH,PATH.", "--samples", "-d")
    out: str = setting(MISSING, "Output directory (absent or empty): the backbone as an HF checkpoint, "
                                "score.safetensors, reward_model.json, metrics.jsonl, reward_model.png, the "
                                "tokenizer.", "--out", "-o")
    model: str | None = setting(None, "Policy to start from (its architecture and weights): HF directory, .gguf, "
                                      "preset or HF repo id (default: the embedded model).", "--model", "-m")
    label: str = setting("passed", "Target of each sample: passed (1 iff its category is passed) or fraction "
                                   "(tests_passed / tests_total, a soft target).", "--label", choices=LABELS)
    lr: float = setting(1e-5, "AdamW learning rate (constant), for the backbone and the score head alike.", "--lr")
    weight_decay: float = setting(0.0, "AdamW weight decay.", "--weight-decay")
    steps: int = setting(200, "Optimizer steps (ignored when --epochs is given).", "--steps")
    epochs: float | None = setting(None, "Passes over the training split; when set, steps = ceil(epochs x "
                                         "training samples / batch).", "--epochs")
    batch: int = setting(8, "Samples per optimizer step.", "--batch")
    max_len: int = setting(2048, "Tokens per sample at most: the prompt is cut from the left, the completion kept "
                                 "(a longer completion keeps its end, where the score is read). Capped at the "
                                 "model's max_position_embeddings.", "--max-len")
    held_out: float = setting(0.1, "Share of the prompts held out for accuracy and AUC (whole task_ids, by a seeded "
                                   "hash: held-out prompts are never trained on).", "--held-out")
    seed: int = setting(0, "Seeds the split, the head's initialisation and the data order.", "--seed")
    lora_rank: int = setting(0, "LoRA rank (0: full fine-tuning of the backbone). With LoRA only the adapters "
                                "and the score head train; the adapters are merged into the saved backbone.",
                             "--lora-rank")
    lora_alpha: float = setting(32.0, "LoRA alpha: the adapter's product is scaled by alpha / rank.", "--lora-alpha")
    drop_categories: str = setting("sandbox_error", "Comma-separated sample categories left out of training and "
                                                    "evaluation (sandbox_error labels the machine, not the code).",
                                   "--drop-categories")
    eval_every: int = setting(0, "Steps between held-out evaluations (0: only at the end).", "--eval-every",
                              run=True)
    device: str = setting("auto", "Where to train: auto (cuda when available), cpu, cuda, cuda:N.", "--device",
                          run=True)
    precision: str = setting("auto", "auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 or fp32. Weights and the "
                                     "loss stay fp32.", "--precision", run=True, choices=("auto", "bf16", "fp32"))

    def validate(self) -> None:
        def bad(message: str) -> NoReturn:
            raise RewardModelError(message)

        if self.label not in LABELS:
            bad(f"label must be one of {', '.join(LABELS)}, got {self.label!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            bad(f"lr must be a positive number and weight_decay >= 0, got lr {self.lr}, "
                f"weight_decay {self.weight_decay}")
        if self.steps < 1 or self.batch < 1:
            bad(f"steps and batch must be at least 1, got steps {self.steps}, batch {self.batch}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            bad(f"epochs must be positive, got {self.epochs}")
        if self.max_len < 2:
            bad(f"max_len must be at least 2 tokens, got {self.max_len}")
        if not 0 < self.held_out < 1:
            bad(f"held_out must lie in (0, 1): accuracy and AUC are measured on unseen prompts, got {self.held_out}")
        if self.lora_rank < 0 or not self.lora_alpha > 0:
            bad(f"lora_rank must be >= 0 and lora_alpha positive, got {self.lora_rank}, {self.lora_alpha}")
        unknown = [c for c in self.dropped() if c not in CATEGORIES]
        if unknown:
            bad(f"drop_categories names unknown categories {', '.join(map(repr, unknown))}; "
                f"the categories are {', '.join(CATEGORIES)}")
        if "passed" in self.dropped():
            bad("drop_categories cannot drop passed: nothing would be positive")
        if self.eval_every < 0:
            bad(f"eval_every must be >= 0, got {self.eval_every}")

    def dropped(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.drop_categories.split(",") if c.strip())

    def sample_paths(self) -> list[Path]:
        """The samples files: each comma-separated path, a run directory meaning its samples.jsonl."""
        paths = []
        for part in str(self.samples).split(","):
            if not part.strip():
                continue
            path = Path(part.strip()).expanduser()
            paths.append(path / "samples.jsonl" if path.is_dir() else path)
        if not paths:
            raise RewardModelError("--samples names no file")
        return paths


# ------------------------------------------------------------------------------ samples
@dataclass
class Sample:
    prompt: str
    completion: str
    category: str
    group: str  # the split's unit: task_id (the prompt where a row has none)
    target: float  # the training label (0/1, or a fraction)
    where: str  # file:line, for errors

    @property
    def passed(self) -> bool:
        """The held-out truth, whatever the training label: did the sample pass all its tests?"""
        return self.category == "passed"


def _row_problem(row, label: str) -> str | None:
    """Why one parsed line cannot be used, or None."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    missing = [k for k in ("prompt", "completion", "category") if k not in row]
    if missing:
        return f"lacks {', '.join(map(repr, missing))}"
    for key in ("prompt", "completion", "category"):
        if not isinstance(row[key], str):
            return f"{key!r} must be a string, not {type(row[key]).__name__}"
    if row["category"] not in CATEGORIES:
        return f"unknown category {row['category']!r} (one of {', '.join(CATEGORIES)})"
    if "task_id" in row and not isinstance(row["task_id"], (str, int)):
        return f"'task_id' must be a string, not {type(row['task_id']).__name__}"
    if label == "fraction":
        counts = [row.get(k) for k in ("tests_passed", "tests_total")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return "--label fraction needs 'tests_passed' and 'tests_total' as integers >= 0"
        if counts[0] > counts[1]:
            return f"tests_passed {counts[0]} exceeds tests_total {counts[1]}"
    return None


def _target(row: dict, label: str) -> float:
    if label == "passed" or not row["tests_total"]:
        return 1.0 if row["category"] == "passed" else 0.0
    return row["tests_passed"] / row["tests_total"]


def read_samples(paths: Sequence[str | Path], label: str = "passed",
                 drop: Sequence[str] = ("sandbox_error",)) -> tuple[list[Sample], Counter]:
    """Every usable sample of the files (in order) and the count of rows dropped by category.

    Every line is checked first; a file set with any bad line is refused as a whole, with one
    error naming each bad line (file:line) and why: training on less than the user believes is
    in the files, without a word, would be worse than stopping.
    """
    samples: list[Sample] = []
    dropped: Counter = Counter()
    bad: list[str] = []
    lines = 0
    for path in map(Path, paths):
        if not path.is_file():
            raise RewardModelError(f"samples file {path} does not exist" if not path.exists() else
                                   f"samples file {path} is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise RewardModelError(f"samples file {path} cannot be read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise RewardModelError(f"samples file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            lines += 1
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append(f"{where}: not JSON ({e.msg} at column {e.colno})")
                continue
            problem = _row_problem(row, label)
            if problem:
                bad.append(f"{where}: {problem}")
                continue
            if row["category"] in drop:
                dropped[row["category"]] += 1
                continue
            group = str(row["task_id"]) if "task_id" in row else row["prompt"]
            samples.append(Sample(row["prompt"], row["completion"], row["category"], group, _target(row, label),
                                  where))
    if bad:
        shown = "\n".join(f"  {b}" for b in bad[:_SHOWN_BAD_LINES])
        more = f"\n  ... and {len(bad) - _SHOWN_BAD_LINES} more" if len(bad) > _SHOWN_BAD_LINES else ""
        raise RewardModelError(f"{len(bad)} of {lines} sample lines cannot be used, so the samples are refused as a "
                               f"whole:\n{shown}{more}")
    if not samples:
        what = f" ({lines} rows, all dropped: {dict(dropped)})" if lines else ""
        raise RewardModelError(f"no usable samples in {', '.join(map(str, paths))}{what}")
    return samples, dropped


def in_held_out(group: str, seed: int, fraction: float) -> bool:
    """Whether a task is held out: a seeded hash of its id, so the split is the same on every machine and run,
    and a task's samples are all on one side."""
    digest = hashlib.blake2b(f"{seed}/{group}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < fraction


def split(samples: list[Sample], seed: int, fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) by task (see `in_held_out`); each side must be non-empty."""
    train, held = [], []
    for s in samples:
        (held if in_held_out(s.group, seed, fraction) else train).append(s)
    tasks = len({s.group for s in samples})
    if not held or not train:
        side = "held-out" if not held else "training"
        raise RewardModelError(f"the {side} split is empty: {tasks} distinct task(s), held_out {fraction}; give "
                               f"samples of more tasks, or change --held-out or --seed")
    return train, held


# ------------------------------------------------------------------------------ AUC
def auc(scores: Sequence[float], labels: Sequence) -> float:
    """The ROC AUC of `scores` for 0/1 `labels`: the Mann-Whitney U statistic of the positives' ranks over
    n_pos x n_neg, tied scores sharing their average rank (so a tie counts one half). The probability that a
    random positive scores above a random negative; 0.5 is chance."""
    scores = [float(s) for s in scores]
    if len(scores) != len(labels):
        raise ValueError(f"auc: {len(scores)} scores but {len(labels)} labels")
    if any(label not in (0, 1) for label in labels):
        raise ValueError("auc: labels must be 0/1 (or booleans)")
    if any(math.isnan(s) for s in scores):
        raise RewardModelError("auc: a score is NaN")
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise RewardModelError(f"AUC needs both classes, got {positives} positive and {negatives} negative labels: "
                               "it compares positives with negatives")
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ranks are 1-based; a tie shares the mean of its ranks
        i = j + 1
    rank_sum = sum(r for r, label in zip(ranks, labels) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


# ------------------------------------------------------------------------------ the network
class RewardModel(nn.Module):
    """The policy's network with a scalar head: `backbone` (a `Transformer` whose `lm_head` is `nn.Identity()`,
    so it returns final-norm hidden states (B, T, H)) and `score` (H -> 1), read at each row's last real token.

    The policy's own output head is kept aside (not a submodule: not trained, not moved), only to save the
    backbone as a complete checkpoint that any loader accepts.
    """

    def __init__(self, backbone: nn.Module, score: nn.Linear | None = None):
        super().__init__()
        hidden = backbone.config.hidden_size
        head = backbone.lm_head
        self._policy_head = [head] if not isinstance(head, nn.Identity) else []
        backbone.lm_head = nn.Identity()
        self.backbone = backbone
        self.score = score if score is not None else nn.Linear(hidden, 1)
        if self.score.in_features != hidden or self.score.out_features != 1:
            raise CheckpointError(f"the score head maps {self.score.in_features} -> {self.score.out_features}; the "
                                  f"backbone's hidden size is {hidden} (expected {hidden} -> 1)")

    @property
    def config(self):
        return self.backbone.config

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T), right-padded, with each row's real length -> (reward logits (B,) in fp32, MoE aux loss).

        Only the last real position of each row goes through the head. Causal attention means the
        padding after it never reaches it, so a row's score does not depend on how it is padded.
        """
        hidden, aux = self.backbone(tokens)
        b, t = tokens.shape
        if lengths is None:
            lengths = torch.full((b,), t, device=tokens.device)
        last = hidden[torch.arange(b, device=tokens.device), lengths.to(tokens.device) - 1]
        return self.score(last.float()).squeeze(-1), aux

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone's weights in our key names, the policy's output head included (LoRA must be merged)."""
        from dscoder.model.lora import lora_modules

        if lora_modules(self.backbone):
            raise CheckpointError("merge the LoRA adapters (merge_lora) before saving the backbone")
        state = dict(self.backbone.state_dict())
        if not self.config.tie_word_embeddings:
            if not self._policy_head:
                raise CheckpointError("the backbone has no output head to save (it was built without one)")
            state["lm_head.weight"] = self._policy_head[0].weight.detach()
        return state


def encode_pair(tokenizer, prompt: str, completion: str, max_len: int,
                prompt_cache: dict[str, list[int]] | None = None) -> list[int]:
    """The tokens the reward model reads for one sample: the prompt then the completion, each encoded apart
    (as generation produced them), at most `max_len`, cut from the prompt's left.

    The prompt gets the tokenizer's BOS unless its text already starts with it (a chat template writes its
    own). A completion longer than `max_len` keeps its last `max_len` tokens: the end is where the score is
    read, and what a sample's verdict turns on is more often at its end than in the prompt's start.
    `prompt_cache` (prompt -> ids) saves encoding a GRPO group's one prompt once per sample.
    """
    p = prompt_cache.get(prompt) if prompt_cache is not None else None
    if p is None:
        bos = tokenizer.bos_token
        p = tokenizer.encode(prompt, add_bos=False if (bos and prompt.startswith(bos)) else None)
        if prompt_cache is not None:
            prompt_cache[prompt] = p
    c = tokenizer.encode(completion, add_bos=False)
    if len(c) >= max_len:
        return c[len(c) - max_len:]
    room = max_len - len(c)
    return p[max(0, len(p) - room):] + c


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_id, tokenizer.eos_id, 0):
        if value is not None:
            return int(value)
    return 0  # unreachable


def _batch(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens (B, T) and lengths (B,)."""
    width = max(map(len, rows))
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return tokens.to(device), torch.tensor([len(r) for r in rows], device=device)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RewardModelError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RewardModelError(f"--device {name}: CUDA is not available here")
    return device


def _logits(model: RewardModel, rows: list[list[int]], pad: int, device, batch: int, autocast: bool) -> list[float]:
    """The model's logit of every row, in order (rows sorted by length inside, to pad less)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = [0.0] * len(rows)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
        for start in range(0, len(order), batch):
            chosen = order[start:start + batch]
            tokens, lengths = _batch([rows[i] for i in chosen], pad, device)
            logits, _ = model(tokens, lengths)
            for i, value in zip(chosen, logits.float().cpu().tolist()):
                out[i] = value
    return out


# ------------------------------------------------------------------------------ scoring
class RewardScorer:
    """Scores (prompt, completion) pairs with a reward model: the probability that the completion passes.

    `RewardScorer.load(OUT)` reads what `train_reward_model` wrote; `RewardScorer(model, tokenizer, max_len)`
    wraps one in memory. GRPO's `reward=model` calls `score`.
    """

    def __init__(self, model: RewardModel, tokenizer, max_len: int, device: torch.device | str | None = None,
                 autocast: bool = False):
        """`device` None: where the model's weights are. `autocast`: bf16 autocast while scoring."""
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = min(int(max_len), model.config.max_position_embeddings)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.autocast = autocast
        self.pad = _pad_id(tokenizer)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "RewardScorer":
        """The reward model in directory `path` (from `dscoder train reward-model`), on `device`, in eval mode."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from dscoder.hub import load_model, load_tokenizer

        path = Path(path).expanduser()
        info_path = path / INFO_FILE
        if not info_path.is_file():
            raise CheckpointError(f"{path} is not a reward model directory (no {INFO_FILE}); make one with "
                                  "`dscoder train reward-model`")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{info_path} cannot be read: {e}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("max_len"), int):
            raise CheckpointError(f"{info_path} is not a {FORMAT} description (format, max_len)")
        head_path = path / HEAD_FILE
        try:
            head = load_file(str(head_path))
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{head_path} cannot be read: {e}") from None
        backbone = load_model(path)  # on the CPU first: the policy's unused output head stays there
        hidden = backbone.config.hidden_size
        shapes = {k: tuple(v.shape) for k, v in head.items()}
        if shapes != {"weight": (1, hidden), "bias": (1,)}:
            raise CheckpointError(f"{head_path} holds {shapes}; a score head of this backbone is weight "
                                  f"{(1, hidden)} and bias (1,)")
        score = nn.Linear(hidden, 1)
        score.load_state_dict(head)
        model = RewardModel(backbone, score).to(device).eval()
        return cls(model, load_tokenizer(path), info["max_len"], device)

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
        rows, prompts = [], {}
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RewardModelError(f"sample {i}: expected a (prompt, completion) pair of strings")
            row = encode_pair(self.tokenizer, pair[0], pair[1], self.max_len, prompts)
            if not row:
                raise RewardModelError(f"sample {i}: the prompt and the completion are both empty: nothing to score")
            rows.append(row)
        return rows

    def logits(self, pairs: Sequence[tuple[str, str]], batch: int = 8) -> list[float]:
        """The raw scores (logits), in order."""
        if batch < 1:
            raise RewardModelError(f"batch must be at least 1, got {batch}")
        if not pairs:
            return []
        self.model.eval()
        values = _logits(self.model, self.encode(pairs), self.pad, self.device, batch, self.autocast)
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise RewardModelError(f"sample {i}: the reward model's score is {value} (not finite); the model "
                                       "or this input is broken")
        return values

    def score(self, pairs: Sequence[tuple[str, str]], batch: int = 8) -> list[float]:
        """The probability (sigmoid of the score) that each completion passes its prompt's tests, in order."""
        return [1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
                for v in self.logits(pairs, batch)]


# ------------------------------------------------------------------------------ saving
def save_reward_model(model: RewardModel, out: str | Path, tokenizer_source: str | Path, info: dict,
                      extra=None) -> Path:
    """Write `model` as a reward model directory `out` (absent or empty) in one step: the backbone as an HF
    checkpoint (fp32; LoRA merged first, in place), `score.safetensors`, `reward_model.json` (`info` plus the
    format and max_len it must hold), then `extra(directory)` for anything else, and the tokenizer of
    `tokenizer_source` (copied as `hub.convert` copies it). A failure leaves no `out`."""
    from safetensors.torch import save_file

    from dscoder.formats.hf import save_hf_state
    from dscoder.hub import write_model_dir
    from dscoder.model.lora import lora_modules, merge_lora

    _check_out(out)
    if lora_modules(model.backbone):
        merge_lora(model.backbone)
    info = {"format": FORMAT, "version": 1, **info}
    if not isinstance(info.get("max_len"), int):
        raise ValueError("info must say max_len (the scorer cuts inputs to it)")

    def write(building: Path) -> None:
        save_hf_state(model.config, model.backbone_state(), building, torch.float32)
        _index_single_shard(building)
        head = {k: v.detach().float().cpu().contiguous() for k, v in model.score.state_dict().items()}
        save_file(head, str(building / HEAD_FILE))
        (building / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if extra is not None:
            extra(building)

    wrote_tokenizer = write_model_dir(out, False, Path(tokenizer_source), write)
    if wrote_tokenizer.startswith("no tokenizer"):  # write_model_dir only reports this; a scorer needs one
        raise CheckpointError(f"{out} was written without a tokenizer ({wrote_tokenizer}); "
                              "RewardScorer.load needs one there")
    return Path(out)


def _index_single_shard(directory: Path) -> None:
    """Give a one-file backbone a shard index too, as a sharded save has: loaders (ours, transformers) then read
    the files it lists, not every *.safetensors of the directory, which would take score.safetensors's
    `weight` and `bias` for backbone tensors."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.exists():
        return
    shard = directory / "model.safetensors"
    with safe_open(str(shard), framework="pt") as handle:
        keys = list(handle.keys())
    with open(shard, "rb") as f:  # safetensors: a u64 header length, the header, then the tensors' bytes
        header = 8 + int.from_bytes(f.read(8), "little")
    index.write_text(json.dumps({"metadata": {"total_size": shard.stat().st_size - header},
                                 "weight_map": {k: shard.name for k in keys}}, indent=2) + "\n", encoding="utf-8")


def _check_out(out: str | Path) -> None:
    """OUT must be absent or an empty directory: refused before any work, so nothing in it is touched."""
    path = Path(out).expanduser()
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    if (path / INFO_FILE).exists():
        raise RewardModelError(f"--out {out} already holds a reward model; choose another directory (or remove it)")
    raise RewardModelError(f"--out {out} exists and is not an empty directory; choose another directory")


# ------------------------------------------------------------------------------ training
def _progress(enabled: bool, total: int):
    import contextlib

    if not enabled:
        return contextlib.nullcontext(lambda step, text: None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        with Progress(TextColumn("[bold]reward model"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn()) as progress:
            task = progress.add_task("", total=total)
            yield lambda step, text: progress.update(task, completed=step, description=text)
    return bar()


def _evaluate(model: RewardModel, rows: list[list[int]], held: list[Sample], pad: int, device, batch: int,
              autocast: bool) -> dict:
    """Held-out accuracy at probability 0.5, AUC and loss. The truth is `passed` whatever the training label:
    that is what a reward for GRPO must rank."""
    was_training = model.training
    model.eval()
    try:
        logits = _logits(model, rows, pad, device, batch, autocast)
    finally:
        model.train(was_training)
    if not all(math.isfinite(v) for v in logits):
        raise RewardModelError("the reward model's held-out scores are not finite (NaN or inf): training diverged; "
                               "lower --lr")
    truth = [int(s.passed) for s in held]
    correct = sum((v > 0) == bool(t) for v, t in zip(logits, truth))
    targets = torch.tensor([s.target for s in held])
    loss = F.binary_cross_entropy_with_logits(torch.tensor(logits), targets).item()
    return {"held_out_accuracy": correct / len(held), "held_out_auc": auc(logits, truth), "held_out_loss": loss}


def _plot(records: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "held_out_auc" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    steps, losses = [r["step"] for r in train], [r["loss"] for r in train]
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted BCE")
    ax.set_title("training loss")
    ax.legend()
    ax = axes[1]
    ax.plot([r["step"] for r in evals], [r["held_out_accuracy"] for r in evals], "o-", label="accuracy at 0.5")
    ax.plot([r["step"] for r in evals], [r["held_out_auc"] for r in evals], "s-", label="AUC")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_title("held-out prompts (step 0: untrained)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def train_reward_model(cfg: RewardModelConfig, progress: bool = True) -> dict:
    """Read the samples, split them by task, train the reward model, measure it on the held-out tasks and write
    OUT (see the module docstring); returns the summary written to reward_model.json.

    Everything that can be refused is refused before the model loads: the settings, an OUT that is
    not empty, a bad samples line, a split without both classes on either side.
    """
    from dscoder.hub import load_model, load_tokenizer, resolve
    from dscoder.model.lora import apply_lora

    start_time = time.monotonic()
    cfg.validate()
    _check_out(cfg.out)
    samples, dropped = read_samples(cfg.sample_paths(), cfg.label, cfg.dropped())
    train, held = split(samples, cfg.seed, cfg.held_out)
    positive = sum(s.target for s in train)
    negative = len(train) - positive
    if positive <= 0 or negative <= 0:
        which = "positive (no sample passed)" if positive <= 0 else "negative (every sample passed)"
        raise RewardModelError(f"the training split has no {which} labels among its {len(train)} samples: a "
                               "reward model cannot learn to tell passes from failures from one class")
    held_pos = sum(s.passed for s in held)
    if held_pos in (0, len(held)):
        raise RewardModelError(f"the held-out split ({len(held)} samples of {len({s.group for s in held})} tasks) has "
                               f"only {'failures' if not held_pos else 'passes'}: its AUC is undefined; change "
                               "--held-out or --seed, or give samples of more tasks")

    device = _device(cfg.device)
    autocast = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    source = resolve(cfg.model)
    tokenizer = load_tokenizer(source)
    backbone = load_model(source)
    if getattr(backbone, "quant_config", None) is not None:
        raise RewardModelError(f"{source} is saved quantized ({backbone.quant_config.scheme}): train a reward model "
                               "from the full-precision policy")
    max_len = min(cfg.max_len, backbone.config.max_position_embeddings)
    pad = _pad_id(tokenizer)
    prompts: dict[str, list[int]] = {}

    def encode(s: Sample) -> list[int]:
        ids = encode_pair(tokenizer, s.prompt, s.completion, max_len, prompts)
        if not ids:
            raise RewardModelError(f"{s.where}: the prompt and the completion are both empty: nothing to score")
        return ids

    train_rows, held_rows = [encode(s) for s in train], [encode(s) for s in held]
    prompts.clear()

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    hidden = backbone.config.hidden_size
    score = nn.Linear(hidden, 1)
    with torch.no_grad():
        score.weight.normal_(0.0, 1.0 / math.sqrt(hidden), generator=gen)  # a logit of std ~1 at the start
        score.bias.zero_()
    model = RewardModel(backbone, score)
    if cfg.lora_rank:
        apply_lora(model.backbone, cfg.lora_rank, cfg.lora_alpha, 0.0, generator=gen)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pos_weight = torch.tensor(negative / positive, device=device)
    steps = math.ceil(cfg.epochs * len(train) / cfg.batch) if cfg.epochs is not None else cfg.steps

    def order():  # an endless stream of training indices, a fresh seeded permutation per pass
        while True:
            yield from torch.randperm(len(train), generator=gen).tolist()

    stream = order()
    targets_all = torch.tensor([s.target for s in train], dtype=torch.float32)
    # The untrained model's held-out numbers first (step 0): what training added is the difference.
    before = _evaluate(model, held_rows, held, pad, device, 2 * cfg.batch, autocast)
    records: list[dict] = [{"step": 0, **before}]
    last: dict = {}
    with _progress(progress, steps) as show:
        for step in range(1, steps + 1):
            chosen = [next(stream) for _ in range(cfg.batch)]
            tokens, lengths = _batch([train_rows[i] for i in chosen], pad, device)
            with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                logits, aux = model(tokens, lengths)
            loss = F.binary_cross_entropy_with_logits(logits.float(), targets_all[chosen].to(device),
                                                      pos_weight=pos_weight)
            total = loss + aux.float() if aux is not None else loss
            if not torch.isfinite(total):
                raise RewardModelError(f"step {step}: the loss is {total.item()} (not finite): training diverged; "
                                       "lower --lr")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            records.append({"step": step, "loss": loss.item(), "grad_norm": float(grad_norm), "lr": cfg.lr})
            text = f"loss {loss.item():.4f}"
            if step == steps or (cfg.eval_every and step % cfg.eval_every == 0):
                last = _evaluate(model, held_rows, held, pad, device, 2 * cfg.batch, autocast)
                records.append({"step": step, **last})
            if last:
                text += f" held-out acc {last['held_out_accuracy']:.3f} AUC {last['held_out_auc']:.3f}"
            show(step, text)

    model.eval()
    held_neg = len(held) - held_pos
    summary = {
        "out": str(cfg.out), "label": cfg.label, "steps": steps, "max_len": max_len,
        "train_samples": len(train), "train_tasks": len({s.group for s in train}),
        "train_positives": sum(s.passed for s in train), "train_negatives": sum(not s.passed for s in train),
        "pos_weight": negative / positive,
        "held_out_samples": len(held), "held_out_tasks": len({s.group for s in held}),
        "held_out_positives": held_pos, "held_out_negatives": held_neg,
        "held_out_majority_accuracy": max(held_pos, held_neg) / len(held),
        "dropped": dict(dropped), **last, "before": before,
        "seconds": round(time.monotonic() - start_time, 1),
    }
    info = {"max_len": max_len, "label": cfg.label, "model": str(source), "config": as_dict(cfg),
            "metrics": summary}

    def extra(building: Path) -> None:
        (building / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        _plot(records, building / "reward_model.png")

    model.to("cpu")
    save_reward_model(model, cfg.out, source, info, extra)
    return summary


__all__ = ["RewardModelConfig", "RewardModel", "RewardScorer", "RewardModelError", "auc", "encode_pair",
           "read_samples", "save_reward_model", "split", "train_reward_model"]
