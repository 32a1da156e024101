"""LoRA SFT, ours vs TRL: the same fine-tuning run through `dscoder.train.loop.Trainer(task="sft")`
and through TRL's `SFTTrainer` + peft, side by side: loss curves, their agreement, tokens/s.

What is compared. One LoRA supervised fine-tuning run of `--steps` optimizer steps:
  - ours: the real training loop, `Trainer(cfg, progress=False, task="sft")` built from a
    `TrainConfig` (the `sft-tiny` recipe with the settings below), one `Trainer.train_step()` per
    step (reading its `SftStream`, micro-batches with gradient accumulation, masked next-token loss,
    clipping, AdamW; nothing else of `Trainer.run`: no validation, checkpoint or metrics file);
  - TRL: `trl.SFTTrainer(...).train()` on a peft `PeftModel` over transformers'
    `AutoModelForCausalLM`, with a callback that records each step's loss, gradient norm and the
    wall time at `on_step_end`.

    python benchmarks/sft.py                       # SmolLM2-135M, 3 x (ours, TRL), appends to RESULTS.md
    python benchmarks/sft.py --steps 20 --micro-batch 2 --repeats 1 --no-save   # a longer loss curve
    python benchmarks/sft.py --tiny --steps 2 --repeats 1 --no-save     # smoke test (under a minute)
    python benchmarks/sft.py --model DIR_OR_PRESET --data chats.jsonl

Defaults: 8 steps of 2 rows (1 x 2 accumulation), 3 runs a side. On a quiet 2-core CPU that is a few
minutes; on a shared one it can be far more (with a 1-minute load average of 4-5 on 2 cores, a
step of SmolLM2-135M on 4 rows of ~120 tokens took 18 s, and one run of 8 steps of 2 rows one
to three minutes), so `--budget` (default 540 s) starts no new pair of runs once the time so far plus the last
pair's duration would pass it, and a SIGTERM or Ctrl-C (a `timeout`) still reports the
pairs that finished. Every run's tok/s and losses are also printed to stderr as it ends.

The same on both sides:
  - weights: the model (default: the embedded SmolLM2-135M-Instruct, `dscoder.hub.load(None)`,
    dequantized to fp32) is written once as an HF directory (`save_hf_dir` + `Tokenizer.save`);
    ours loads it with `hub.load_model`, TRL with `AutoModelForCausalLM.from_pretrained`;
  - the adapter's start: LoRA r=16, alpha=32, dropout 0, on q,k,v,o,gate,up,down_proj. Ours draws
    A (Kaiming-uniform, seeded) and B = 0; that initial adapter is written in peft's format
    (`dscoder.formats.peft.save_adapter`) and TRL's model is `PeftModel.from_pretrained(...,
    is_trainable=True)` of it, so both start from the same A (checked: a checksum of the factors);
  - the data and its order: a seeded synthetic JSONL of chats asking for small Python functions
    (or `--data FILE`), tokenized by our `read_sft` (chat template, labels on the assistant's
    tokens and its end-of-turn token only). The rows come out of our `SftStream` (unpacked: one
    sample a row), and TRL gets exactly those rows, in that order, already tokenized as
    `input_ids` + `labels` (`dataset_kwargs={"skip_prepare_dataset": True}`,
    `train_sampling_strategy="sequential"`, `shuffle_dataset=False`), so step k of both sees the
    same samples cut into the same micro-batches;
  - the optimisation: global batch = micro batch x accumulation (default 1 x 2), the loss of a step
    the mean over every trained token of the global batch (transformers' `num_items_in_batch`;
    TRL's loss divides each micro-batch's sum by it and skips the 1/accumulation scaling),
    AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0; ours foreach, TRL `optim="adamw_torch"`),
    the same constant LR, no warm-up, gradient clipping at 1.0, fp32 on the CPU, no gradient
    checkpointing (TRL's default is on: turned off), no packing;
  - the measure: tokens/s = non-padding tokens of the steps after the first / the wall time between
    the end of step 1 and the end of the last step, each side timed at the end of every optimizer
    step (ours: when `train_step` returns; TRL: `on_step_end`), so data loading, logging and the
    trainers' own bookkeeping count on both sides. Both contestants run in their own long-lived
    process (imports and loading not timed); each repeat builds a fresh trainer and model; the
    runs alternate ours, TRL, ours, TRL, ... and the table gives the median and range over
    `--repeats`, and the ratio ours/TRL pair by pair.

What differs (each side as it is built):
  - padding: our unpacked stream pads every row of a step to the longest sample of the whole
    global batch (rounded up to 8); TRL's collator pads each micro-batch to its own longest
    (`pad_to_multiple_of=8` is set to match the rounding). The table gives the padded positions a
    step each side computes; ours computes more of them;
  - attention: ours passes a (B, 1, T, T) boolean mask built from the rows' segment ids to
    `scaled_dot_product_attention`; transformers builds its own causal + padding mask (sdpa);
  - the head and loss: ours computes the full (B, T, vocab) logits and one cross-entropy; TRL
    1.16 patches a fused LM head that projects and scores in tiles without materialising the
    logits, and also computes per-token entropy and top-1 accuracy for its logged metrics;
  - Trainer machinery: accelerate, callbacks, FLOP counting and the per-step `.item()` syncs of
    the metrics on TRL's side; ours reads the loss once a step.

Loss agreement: with dropout 0 both runs are deterministic; the per-step losses should agree to
~1e-5 on the first step (the same weights, batch and mask; only summation order differs) and
drift slowly after it (different kernels give gradients that differ in the last bits, AdamW
amplifies that a little each step). The table reports the first step's losses and the largest
|difference| over the steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from benchlib import WorkerProcess, cpu_name, peak_rss_mib, rss_mib, span  # benchmarks/ is the script's directory

RESULTS = Path(__file__).with_name("RESULTS.md")
PLOT = Path(__file__).with_name("sft-loss.png")
CONTESTANTS = ("ours", "trl")
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
IGNORE = -100


# ---------------------------------------------------------------------------- the data
def _tasks(rng: random.Random) -> tuple[str, str, str]:
    """One small Python task: (what it does, the function, a one-line note on it)."""
    a, b = rng.randint(2, 9), rng.randint(10, 99)
    tasks = [
        ("returns the sum of the squares of a list of numbers", "sum_of_squares",
         "def sum_of_squares(values):\n    return sum(v * v for v in values)",
         "A generator expression avoids building an intermediate list."),
        ("checks whether a number is prime", "is_prime",
         "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
         "        if n % i == 0:\n            return False\n        i += 1\n    return True",
         "Trial division only needs to go up to the square root of n."),
        (f"returns the first {b} Fibonacci numbers as a list", "fibonacci",
         f"def fibonacci(count={b}):\n    result, a, b = [], 0, 1\n    for _ in range(count):\n"
         "        result.append(a)\n        a, b = b, a + b\n    return result",
         "It keeps only the last two numbers, so it runs in linear time."),
        ("reverses the order of the words in a sentence", "reverse_words",
         "def reverse_words(sentence):\n    return \" \".join(reversed(sentence.split()))",
         "`split()` with no argument also collapses repeated spaces."),
        ("counts the vowels in a string", "count_vowels",
         "def count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in \"aeiou\")",
         "Lower-casing first makes the count case-insensitive."),
        (f"clamps a value to the range [{a}, {b}]", "clamp",
         f"def clamp(value, low={a}, high={b}):\n    return max(low, min(high, value))",
         "The bounds are keyword arguments, so other ranges work too."),
        ("flattens a list of lists into one list", "flatten",
         "def flatten(nested):\n    return [item for inner in nested for item in inner]",
         "This flattens one level; use recursion for deeper nesting."),
        (f"splits a list into chunks of {a} items", "chunk",
         f"def chunk(items, size={a}):\n    return [items[i:i + size] for i in range(0, len(items), size)]",
         "The last chunk is shorter when the length is not a multiple of the size."),
        ("converts a temperature from Celsius to Fahrenheit", "celsius_to_fahrenheit",
         "def celsius_to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32",
         "For example, 100 degrees Celsius is 212 degrees Fahrenheit."),
        ("computes the greatest common divisor of two integers", "gcd",
         "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)",
         "This is Euclid's algorithm; `math.gcd` does the same in the standard library."),
        ("computes the factorial of n iteratively", "factorial",
         "def factorial(n):\n    if n < 0:\n        raise ValueError(\"n must be non-negative\")\n    result = 1\n"
         "    for i in range(2, n + 1):\n        result *= i\n    return result",
         "Negative inputs raise a ValueError instead of returning a wrong answer."),
        ("checks whether a string is a palindrome, ignoring case and spaces", "is_palindrome",
         "def is_palindrome(text):\n    cleaned = \"\".join(ch.lower() for ch in text if not ch.isspace())\n"
         "    return cleaned == cleaned[::-1]",
         "Slicing with a step of -1 reverses the string."),
        ("removes duplicates from a list while keeping the original order", "dedupe",
         "def dedupe(items):\n    seen = set()\n    result = []\n    for item in items:\n"
         "        if item not in seen:\n            seen.add(item)\n            result.append(item)\n    return result",
         "The set gives constant-time membership checks."),
        ("counts how often each word appears in a text", "word_counts",
         "from collections import Counter\n\n\ndef word_counts(text):\n    return Counter(text.lower().split())",
         "`Counter` is a dict subclass, so the result can be used like a dictionary."),
        ("performs a binary search on a sorted list and returns the index or -1", "binary_search",
         "def binary_search(items, target):\n    low, high = 0, len(items) - 1\n    while low <= high:\n"
         "        mid = (low + high) // 2\n        if items[mid] == target:\n            return mid\n"
         "        if items[mid] < target:\n            low = mid + 1\n        else:\n            high = mid - 1\n"
         "    return -1",
         "Each comparison halves the search range, so it takes O(log n) steps."),
        ("merges two dictionaries, the second one winning on conflicts", "merge_dicts",
         "def merge_dicts(first, second):\n    return {**first, **second}",
         "On Python 3.9+ `first | second` does the same."),
        (f"rotates a list to the right by {a} positions", "rotate",
         f"def rotate(items, k={a}):\n    if not items:\n        return []\n    k %= len(items)\n"
         "    return items[-k:] + items[:-k]",
         "Taking k modulo the length handles rotations longer than the list."),
        ("capitalizes the first letter of every word", "title_case",
         "def title_case(text):\n    return \" \".join(word[:1].upper() + word[1:] for word in text.split(\" \"))",
         "Unlike `str.title()`, this leaves the rest of each word unchanged."),
        ("returns the sum of the digits of a non-negative integer", "digit_sum",
         "def digit_sum(n):\n    return sum(int(d) for d in str(n))",
         "Converting to a string is the simplest way to walk the digits."),
        (f"computes the moving average of a list with a window of {a}", "moving_average",
         f"def moving_average(values, window={a}):\n    return [sum(values[i:i + window]) / window\n"
         "            for i in range(len(values) - window + 1)]",
         "The result has len(values) - window + 1 entries."),
        ("transposes a matrix given as a list of rows", "transpose",
         "def transpose(matrix):\n    return [list(row) for row in zip(*matrix)]",
         "`zip(*matrix)` pairs up the i-th element of every row."),
        ("compresses a string with run-length encoding, like 'aaab' -> 'a3b1'", "run_length",
         "def run_length(text):\n    if not text:\n        return \"\"\n    out, current, count = [], text[0], 1\n"
         "    for ch in text[1:]:\n        if ch == current:\n            count += 1\n        else:\n"
         "            out.append(f\"{current}{count}\")\n            current, count = ch, 1\n"
         "    out.append(f\"{current}{count}\")\n    return \"\".join(out)",
         "Building a list and joining once is faster than repeated string concatenation."),
        (f"returns the {a} largest numbers of a list in descending order", "top_k",
         f"import heapq\n\n\ndef top_k(values, k={a}):\n    return heapq.nlargest(k, values)",
         "`heapq.nlargest` is O(n log k), cheaper than sorting everything when k is small."),
        ("checks whether two strings are anagrams of each other", "are_anagrams",
         "def are_anagrams(first, second):\n    return sorted(first.replace(\" \", \"\").lower()) == "
         "sorted(second.replace(\" \", \"\").lower())",
         "Sorting both strings puts equal letter multisets in the same order."),
    ]
    what, name, code, note = rng.choice(tasks)
    return what, name, code, note


ASKS = ("Write a Python function `{name}` that {what}.",
        "Implement `{name}` in Python: it {what}.",
        "Can you give me a Python function that {what}? Call it `{name}`.",
        "I need a small Python helper named `{name}` that {what}.",
        "Please write `{name}`, a function that {what}. Keep it short.")
SYSTEMS = ("You are a helpful coding assistant.", "You are an expert Python programmer. Answer concisely.")


def make_data(path: Path, rows: int, seed: int) -> None:
    """`rows` chat rows ({"messages": [...]}) asking for small Python functions, seeded."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(rows):
            what, name, code, note = _tasks(rng)
            messages = []
            if rng.random() < 0.3:
                messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
            messages.append({"role": "user", "content": rng.choice(ASKS).format(name=name, what=what)})
            answer = f"Here is `{name}`:\n\n```python\n{code}\n```\n\n{note}"
            if rng.random() < 0.5:
                answer = f"Sure. {answer}"
            messages.append({"role": "assistant", "content": answer})
            f.write(json.dumps({"messages": messages}) + "\n")


def prepare_model(args, directory: Path) -> str:
    """The model as an HF directory both sides load (fp32 weights + our tokenizer's files)."""
    import torch

    from dscoder import hub
    from dscoder.formats.hf import save_hf_dir
    from dscoder.model.transformer import Transformer

    net, tokenizer = hub.load(args.model)
    if args.tiny:  # a 2-layer, 64-wide model on the same vocabulary and template: for smoke tests only
        cfg = net.config.replace(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2)
        net = Transformer(cfg).init_weights(generator=torch.Generator().manual_seed(0))
    save_hf_dir(net.float(), directory)
    tokenizer.save(directory)
    total = sum(p.numel() for p in net.parameters())
    return f"{args.model or 'SmolLM2-135M-Instruct (embedded, Q4_1 dequantized to fp32)'}" + \
        (" shrunk to 2 x 64 (--tiny)" if args.tiny else "") + f", {total / 1e6:.0f}M parameters"


# ---------------------------------------------------------------------------- the workers
def our_config(args, out: Path):
    from dscoder.train.config import TrainConfig, build

    base = TrainConfig(data=str(args.data), out=str(out), model=str(args.checkpoint))
    return build(base, "sft-tiny", {
        "epochs": None, "steps": args.steps, "seq_len": args.seq_len, "micro_batch": args.micro_batch,
        "global_batch": args.micro_batch * args.accumulation, "pack": False, "lr": args.lr,
        "schedule": "constant", "warmup_steps": 0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "weight_decay": 0.0, "grad_clip": 1.0, "lora_rank": 16, "lora_alpha": 32.0, "lora_dropout": 0.0,
        "lora_targets": TARGETS, "sft_val_fraction": 0.0, "precision": "fp32", "device": "cpu", "seed": 0,
        "eval_every": 0, "save_every": 0, "fim_eval": 0, "activation_checkpointing": False, "compile": False})


def protocol_stream():
    """The replies' channel: the original stdout; whatever the libraries print goes to stderr (the log)."""
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return reply


def say(stream, message: dict) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def lora_checksum(named) -> float:
    """Sum of |x| over every LoRA factor: the same start on both sides gives the same number."""
    return float(sum(p.detach().double().abs().sum() for name, p in named if "lora_A" in name or "lora_B" in name))


def worker_ours(args) -> None:
    """Write the rows (in our stream's order) and the initial adapter, then run `run K` commands."""
    import torch

    out = protocol_stream()
    torch.set_num_threads(args.threads)
    from dscoder.formats.peft import save_adapter
    from dscoder.train.loop import Trainer

    scratch = Path(args.scratch)
    base = rss_mib()
    probe = Trainer(our_config(args, scratch / "ours-probe"), progress=False, task="sft")
    steps = []
    for _ in range(args.steps):  # the rows each step reads, as train_step will read them
        batch = probe.stream.next_batch(probe.cfg.global_batch)
        rows = []
        for tokens, labels, segments in zip(batch.tokens, batch.labels, batch.segments):
            n = int((segments != 0).sum())
            rows.append({"input_ids": tokens[:n].tolist(), "labels": labels[:n].tolist()})
        steps.append({"width": batch.tokens.shape[1], "rows": rows})
    (scratch / "rows.json").write_text(json.dumps({"steps": steps, "data": probe.data_summary}))
    save_adapter(probe.net, scratch / "adapter", str(args.checkpoint))
    start = lora_checksum(probe.net.named_parameters())
    probe.log.close()
    del probe
    say(out, {"ready": True, "lora_checksum": start})
    for line in sys.stdin:
        command = line.split()
        if command[0] != "run":
            say(out, {"peak_mib": peak_rss_mib() - base})
            return
        trainer = Trainer(our_config(args, scratch / f"ours-{command[1]}"), progress=False, task="sft")
        checksum = lora_checksum(trainer.net.named_parameters())
        ends, losses, norms, tokens = [], [], [], []
        began = time.perf_counter()
        for _ in range(args.steps):
            record = trainer.train_step()
            ends.append(time.perf_counter())
            losses.append(record["loss"])
            norms.append(record["grad_norm"])
        tokens = trainer.tokens
        trainer.log.close()
        say(out, {"began": began, "ends": ends, "losses": losses, "grad_norms": norms, "tokens": tokens,
                  "lora_checksum": checksum})


def worker_trl(args) -> None:
    """Build a fresh SFTTrainer + PeftModel per `run K` command and train it on the recorded rows."""
    import torch

    out = protocol_stream()
    torch.set_num_threads(args.threads)
    import transformers
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    transformers.logging.set_verbosity_error()
    scratch = Path(args.scratch)
    base = rss_mib()
    recorded = json.loads((scratch / "rows.json").read_text())
    rows = [row for step in recorded["steps"] for row in step["rows"]]
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    class Recorder(TrainerCallback):
        def __init__(self):
            self.began, self.ends, self.losses, self.norms, self.tokens = None, [], [], [], 0

        def on_train_begin(self, args, state, control, **kw):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.norms.append(float(logs.get("grad_norm", float("nan"))))
                self.tokens = int(logs.get("num_tokens", 0))

    say(out, {"ready": True})
    for line in sys.stdin:
        command = line.split()
        if command[0] != "run":
            say(out, {"peak_mib": peak_rss_mib() - base})
            return
        model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(scratch / "adapter"), is_trainable=True)
        checksum = lora_checksum(model.named_parameters())
        config = SFTConfig(
            output_dir=str(scratch / f"trl-{command[1]}"), max_steps=args.steps, num_train_epochs=1,
            per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=args.accumulation,
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, optim="adamw_torch",
            bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, seed=0,
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, max_length=args.seq_len, packing=False, pad_to_multiple_of=8,
            shuffle_dataset=False, train_sampling_strategy="sequential",
            dataset_kwargs={"skip_prepare_dataset": True})
        recorder = Recorder()
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, callbacks=[recorder])
        trainer.train()
        say(out, {"began": recorder.began, "ends": recorder.ends, "losses": recorder.losses,
                  "grad_norms": recorder.norms, "tokens": recorder.tokens, "lora_checksum": checksum})
        del trainer, model


class Contestant(WorkerProcess):
    """A worker process, driven one command at a time (as in train_step.py)."""

    def __init__(self, name: str, args, scratch: Path):
        command = [sys.executable, __file__, "--worker", name, "--scratch", str(scratch),
                   "--checkpoint", str(args.checkpoint), "--data", str(args.data), "--steps", str(args.steps),
                   "--micro-batch", str(args.micro_batch), "--accumulation", str(args.accumulation),
                   "--seq-len", str(args.seq_len), "--lr", str(args.lr), "--threads", str(args.threads)]
        super().__init__(name, command, scratch / f"{name}.log")


def _round8(n: int) -> int:
    return -(-n // 8) * 8


def step_counts(recorded: dict, micro: int) -> dict:
    """Per step: non-padding tokens, and the padded positions each side computes."""
    real, ours, trl = [], [], []
    for step in recorded["steps"]:
        lengths = [len(r["input_ids"]) for r in step["rows"]]
        real.append(sum(lengths))
        ours.append(step["width"] * len(lengths))
        trl.append(sum(_round8(max(lengths[i:i + micro])) * len(lengths[i:i + micro])
                       for i in range(0, len(lengths), micro)))
    return {"real": real, "ours": ours, "trl": trl}


def tokens_per_s(run: dict, real: list[int]) -> float:
    """Non-padding tokens of steps 2..N over the time from the end of step 1 to the end of step N."""
    ends = run["ends"]
    if len(ends) < 2:
        return sum(real) / (ends[-1] - run["began"])  # one step: nothing to leave out
    return sum(real[1:len(ends)]) / (ends[-1] - ends[0])


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, trl = runs["ours"][0]["losses"], runs["trl"][0]["losses"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(range(1, len(ours) + 1), ours, "o-", label="ours (dscoder Trainer)", markersize=3)
    top.plot(range(1, len(trl) + 1), trl, "x--", label="TRL SFTTrainer + peft", markersize=4)
    top.set_ylabel("training loss (mean over trained tokens)")
    top.set_title(title, fontsize=9)
    top.legend()
    top.grid(alpha=0.3)
    n = min(len(ours), len(trl))
    bottom.plot(range(1, n + 1), [a - b for a, b in zip(ours[:n], trl[:n])], "k.-")
    bottom.set_ylabel("ours - TRL")
    bottom.set_xlabel("optimizer step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(args, model_name: str, recorded: dict, counts: dict, runs: dict, peaks: dict, load: tuple,
           elapsed: float, stopped: str | None = None) -> tuple[str, dict]:
    import peft
    import torch
    import transformers
    import trl

    real = counts["real"]
    speed = {name: [tokens_per_s(r, real) for r in runs[name]] for name in CONTESTANTS}
    ratios = [a / b for a, b in zip(speed["ours"], speed["trl"])]
    ours_loss, trl_loss = runs["ours"][0]["losses"], runs["trl"][0]["losses"]
    n = min(len(ours_loss), len(trl_loss))
    diffs = [abs(a - b) for a, b in zip(ours_loss[:n], trl_loss[:n])]
    norm_diffs = [abs(a - b) for a, b in zip(runs["ours"][0]["grad_norms"][:n], runs["trl"][0]["grad_norms"][:n])]
    repeatable = {name: all(r["losses"] == runs[name][0]["losses"] for r in runs[name]) for name in CONTESTANTS}
    after = os.getloadavg()
    summary = recorded["data"]
    device = f"{cpu_name()} ({platform.machine()}), {args.threads} threads"
    command = "python benchmarks/sft.py" + "".join(
        f" {flag} {value}" for flag, value, default in
        (("--steps", args.steps, 8), ("--repeats", args.repeats, 3), ("--micro-batch", args.micro_batch, 1),
         ("--accumulation", args.accumulation, 2), ("--seq-len", args.seq_len, 512), ("--lr", args.lr, 1e-3),
         ("--rows", args.rows, 256)) if value != default) + (" --tiny" if args.tiny else "") + \
        (f" --model {args.model}" if args.model else "") + (f" --data {args.given_data}" if args.given_data else "")
    batch = args.micro_batch * args.accumulation
    lines = [
        f"### sft.py — {date.today()} — {device}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}",
        "",
        f"`{command}`: LoRA SFT of {model_name}, ours (`Trainer(task=\"sft\").train_step`) vs TRL "
        f"(`SFTTrainer.train()` + peft), {args.steps} steps of {batch} rows ({args.micro_batch} x {args.accumulation} "
        f"accumulation), LoRA r=16 alpha=32 dropout 0 on q,k,v,o,gate,up,down (the same initial A), AdamW "
        f"0.9/0.999 wd 0, constant LR {args.lr:g}, clip 1.0, fp32, unpacked rows of at most {args.seq_len} tokens, "
        f"loss on the assistant tokens only; {summary['samples']} synthetic chat samples "
        f"({'--data ' + args.given_data if args.given_data else 'generated, seeded'}), the same rows in the same "
        f"order on both sides. tok/s: non-padding tokens of steps 2-{args.steps} / wall time from the end of step 1 "
        f"to the end of the last step, median (min-max) over {len(runs['ours'])} runs each, alternating ours, TRL"
        f"{' (' + stopped + ')' if stopped else ''}; "
        f"ours/TRL: median (min-max) of the run-by-run ratios. Padded positions: what each side computes a step "
        f"(ours pads the whole global batch to its longest sample, TRL each micro-batch to its own, both to a "
        f"multiple of 8). Peak MiB: each worker process's peak RSS minus its RSS after the imports, over all its "
        f"runs. Load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} before, {after[0]:.1f} / {after[1]:.1f} "
        f"/ {after[2]:.1f} after; the run took {elapsed / 60:.1f} min.",
        "",
        "| side | non-pad tokens/step | padded positions/step | tok/s | ours/TRL | first-step loss | final loss "
        "| peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("ours", "ours (dscoder Trainer)"), ("trl", "TRL SFTTrainer + peft")):
        losses = runs[name][0]["losses"]
        lines.append(f"| {label} | {statistics.mean(real):.0f} | {statistics.mean(counts[name]):.0f} | "
                     f"{span(speed[name], '.0f')} | "
                     f"{f'{statistics.median(ratios):.2f}× ({min(ratios):.2f}-{max(ratios):.2f})' if name == 'ours' else ''}"
                     f" | {losses[0]:.6f} | {losses[-1]:.6f} | "
                     f"{'n/a' if peaks[name] != peaks[name] else f'{peaks[name]:.0f}'} |")
    lines += ["",
              f"Loss agreement over {n} steps: first step ours {ours_loss[0]:.6f} vs TRL {trl_loss[0]:.6f} "
              f"(|diff| {diffs[0]:.1e}); max |loss diff| {max(diffs):.1e} (step {diffs.index(max(diffs)) + 1}); "
              f"max |grad-norm diff| {max(norm_diffs):.1e}. Repeats reproduce their losses bit for bit: "
              f"ours {'yes' if repeatable['ours'] else 'no'}, TRL {'yes' if repeatable['trl'] else 'no'}."
              + ("" if args.no_save else f" Loss curves: benchmarks/{PLOT.name}.")]
    facts = {"speed": speed, "ratios": ratios, "diffs": diffs, "norm_diffs": norm_diffs, "repeatable": repeatable}
    return "\n".join(lines) + "\n", facts


# ---------------------------------------------------------------------------- main
def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model argument (HF dir, .gguf, preset, repo id); default: the embedded "
                                        "SmolLM2-135M-Instruct")
    parser.add_argument("--data", help="a JSONL of chats or instruction/output rows (default: generated)")
    parser.add_argument("--rows", type=int, default=256, help="rows of the generated data")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating ours, TRL")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--accumulation", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--seq-len", type=int, default=512, help="longest row (longer samples keep their start)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--budget", type=float, default=540,
                        help="seconds: no new pair of runs starts when the last pair's time would pass this")
    parser.add_argument("--tiny", action="store_true", help="shrink the model to 2 layers x 64 (smoke test)")
    parser.add_argument("--no-save", action="store_true", help="print the table; do not append to RESULTS.md "
                                                               "nor write the PNG")
    parser.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        return worker_ours(args)
    if args.worker == "trl":
        return worker_trl(args)

    load = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        scratch = Path(tmp)
        args.given_data = args.data
        if args.data is None:
            args.data = scratch / "chats.jsonl"
            make_data(args.data, args.rows, seed=0)
        args.checkpoint = scratch / "model"
        print("writing the model...", file=sys.stderr, flush=True)
        model_name = prepare_model(args, args.checkpoint)
        workers = {}
        try:
            print("starting ours (tokenizing, recording the rows)...", file=sys.stderr, flush=True)
            workers["ours"] = Contestant("ours", args, scratch)
            print("starting TRL...", file=sys.stderr, flush=True)
            workers["trl"] = Contestant("trl", args, scratch)
            recorded = json.loads((scratch / "rows.json").read_text())
            counts = step_counts(recorded, args.micro_batch)
            runs = {name: [] for name in CONTESTANTS}
            stopped, pair_seconds = None, 0.0
            signal.signal(signal.SIGTERM, _interrupt)  # a `timeout` keeps the finished pairs
            try:
                for r in range(args.repeats):
                    took = time.perf_counter() - start
                    if r and took + pair_seconds > args.budget:
                        stopped = f"stopped after {r} of {args.repeats} repeats: another pair would pass --budget " \
                                  f"{args.budget:.0f} s"
                        break
                    began = time.perf_counter()
                    for name in CONTESTANTS:
                        out = workers[name].ask(f"run {r}")
                        runs[name].append(out)
                        print(f"  run {r + 1}/{args.repeats} {name}: {tokens_per_s(out, counts['real']):.0f} tok/s, "
                              f"LoRA checksum {out['lora_checksum']:.6f}, losses "
                              f"{' '.join(f'{x:.6f}' for x in out['losses'])}", file=sys.stderr, flush=True)
                    pair_seconds = time.perf_counter() - began
            except KeyboardInterrupt:
                stopped = f"interrupted during repeat {len(runs['ours']) + (len(runs['trl']) == len(runs['ours']))}" \
                          f" of {args.repeats}; the finished runs are reported"
                for name in CONTESTANTS:  # keep whole pairs only
                    del runs[name][min(len(runs["ours"]), len(runs["trl"])):]
                if not runs["ours"]:
                    raise SystemExit("interrupted before a pair of runs finished: nothing to report") from None
                peaks = {name: float("nan") for name in CONTESTANTS}
            else:
                peaks = {name: workers.pop(name).finish() for name in CONTESTANTS}
            if stopped:
                print(stopped, file=sys.stderr)
        finally:
            for w in workers.values():
                w.proc.kill()
    for name in CONTESTANTS:
        for run in runs[name]:
            if run["tokens"] and run["tokens"] != sum(counts["real"]):
                print(f"warning: {name} counted {run['tokens']} non-padding tokens, the rows hold "
                      f"{sum(counts['real'])}", file=sys.stderr)
    checks = {round(r["lora_checksum"], 6) for name in CONTESTANTS for r in runs[name]}
    if len(checks) != 1:
        print(f"warning: the initial LoRA factors differ between runs/sides (checksums {sorted(checks)})",
              file=sys.stderr)
    elapsed = time.perf_counter() - start
    table, facts = render(args, model_name, recorded, counts, runs, peaks, load, elapsed, stopped)
    print(table)
    print("per step (run 1): loss ours / TRL, difference, seconds ours / TRL:", file=sys.stderr)
    seconds = {name: [b - a for a, b in zip([runs[name][0]["began"]] + runs[name][0]["ends"], runs[name][0]["ends"])]
               for name in CONTESTANTS}
    for i, (a, b) in enumerate(zip(runs["ours"][0]["losses"], runs["trl"][0]["losses"]), start=1):
        print(f"  step {i:3d}: {a:.6f} / {b:.6f}  {a - b:+.2e}  {seconds['ours'][i - 1]:.2f} / "
              f"{seconds['trl'][i - 1]:.2f} s", file=sys.stderr)
    if not args.no_save:
        plot(runs, PLOT, f"LoRA SFT, {model_name}: {args.steps} steps x {args.micro_batch * args.accumulation} rows")
        with RESULTS.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
