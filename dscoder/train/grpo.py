"""GRPO on the training loop: rollouts from the batched engine, rewards from the sandbox, the
clipped-ratio objective with a k3 KL to the reference (`train/grpo_objective.py`).

A step (one exploration stage) is:
1. the next `global_batch / group_size` prompts of a seeded order (`PromptStream`);
2. `group_size` samples of each from the engine, which holds the policy module itself (no copy),
   each rewarded in the sandbox as it completes (`train/rollout.py`, `train/rewards.py`);
3. advantages normalised within each group; the reference policy's log-probabilities once
   (with LoRA: the same network with its adapters switched off, so no second copy of the
   model; full fine-tuning: a frozen copy of the starting weights);
4. `policy_updates` optimizer steps over the batch in micro-batches, π_θold being the engine's
   own log-probabilities of what it sampled;
5. the engine's prefix cache is dropped, so the next rollout is computed with the new weights.

Everything a step draws is seeded by (run seed, step, prompt, sample) and the prompt order by
the run seed, so a resumed run (weights, optimizer and the prompt stream's position restored from
the checkpoint) samples the same completions and computes the same losses as one never stopped.

Each sample is written to RUN/samples.jsonl (prompt, completion, reward, category, the sandbox's
reason), which `dscoder train reward-model` trains on; RUN/report.md shows the step table and a
few samples whose verdict the harness refused (early exits, values that are not plain data).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dscoder import hub
from dscoder.errors import UserError
from dscoder.execute.programs import Executor, Program, default_workers
from dscoder.files import write_atomic
from dscoder.model.lora import adapters_disabled
from dscoder.serve.engine import Engine, EngineConfig
from dscoder.train import adapt, checkpoint, metrics, schedule
from dscoder.train.config import TrainConfig, TrainConfigError
from dscoder.train.grpo_objective import group_advantages, policy_loss, token_entropy, token_logprobs
from dscoder.train.loop import RunResult, Trainer, TrainingDiverged, _grad_norm, _progress
from dscoder.train.optim import set_lr
from dscoder.train.rewards import CATEGORIES, ContainsReward, Scored, SandboxReward, check_sandbox
from dscoder.train.rl_prompts import Task, load as load_prompts
from dscoder.train.rollout import Sample, rollout

REFUSED_SHOWN = 5  # refused samples shown in report.md


class RewardError(UserError):
    """A reward was not a finite number; the step stops before any update."""


class PromptStream:
    """The prompts of each step: a permutation of the tasks per epoch, seeded by the run seed; the
    position is the whole state (checkpointed like a corpus stream's)."""

    def __init__(self, n: int, per_step: int, seed: int):
        self.n, self.per_step, self.seed, self.position = n, per_step, seed, 0

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def take(self) -> list[int]:
        out = []
        for k in range(self.position, self.position + self.per_step):
            out.append(int(self._order(k // self.n)[k % self.n]))
        self.position += self.per_step
        return out

    def state_dict(self) -> dict:
        return {"position": self.position, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if state.get("n") != self.n:
            raise TrainConfigError(f"the checkpoint's prompt stream had {state.get('n')} prompts, this run has {self.n}; "
                                   "resume with the same --prompts")
        self.position = int(state["position"])


class GrpoTrainer(Trainer):
    """A `Trainer` whose data is rollouts and whose step is GRPO's; checkpoints, the LR schedule,
    metrics and LoRA are the loop's own."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, tasks: list[Task] | None = None):
        self._given_tasks = tasks
        self.executor: Executor | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.engine: Engine | None = None
        self._samples_file = None
        super().__init__(cfg, progress, task="grpo")
        cfg = self.cfg
        if self.world.size > 1:
            raise TrainConfigError("GRPO runs on one process (its engine samples from the policy in place)")
        self.net.eval()  # no dropout: the loss must see the distribution the engine sampled from
        self.ref = None
        if cfg.kl_coef and not adapt.is_adapted(self.net):
            start = hub.load_model(cfg.model) if self.step else copy.deepcopy(self.net)
            self.ref = start.to(self.world.device).eval().requires_grad_(False)
        self.engine = Engine(self.net, self.tokenizer, EngineConfig(
            kv_cache_bytes=2 << 30, max_running=min(256, cfg.global_batch), max_waiting=max(256, cfg.global_batch)))
        self.engine.start()
        self._open_samples_log()
        self.reward_model = None
        if cfg.reward == "model":
            from dscoder.train.reward_model import RewardScorer
            self.reward_model = RewardScorer.load(cfg.reward_model, device=str(self.world.device))

    # -------------------------------------------------------------------------------- prompts
    def _open(self, state: dict | None) -> None:
        cfg = self.cfg
        if cfg.global_batch % cfg.group_size:
            raise TrainConfigError(f"global_batch {cfg.global_batch} (samples a step) is not a multiple of group_size "
                                   f"{cfg.group_size}")
        if cfg.global_batch % cfg.micro_batch:
            raise TrainConfigError(f"global_batch {cfg.global_batch} is not a multiple of micro_batch {cfg.micro_batch}")
        runs_tests = not cfg.reward.startswith("contains:")
        tasks = self._given_tasks if self._given_tasks is not None else load_prompts(cfg.data, need_tests=runs_tests,
                                                                                   shots=cfg.prompt_shots)
        summary: dict = {"prompts": len(tasks)}
        workers = cfg.sandbox_workers or default_workers()
        self.pool = ThreadPoolExecutor(max(2, workers * 2), thread_name_prefix="reward")
        if runs_tests:
            summary["sandbox"] = check_sandbox(cfg)
            self.executor = Executor(workers, cfg.sandbox_timeout)
            self.scorer = SandboxReward(cfg, self.executor)
            tasks, dropped = self._check_references(tasks)
            summary["dropped_reference_fails"] = dropped
            if not tasks:
                raise TrainConfigError(f"no problem of {cfg.data} is left: every reference solution failed its tests")
        else:
            self.scorer = ContainsReward(cfg.reward.split(":", 1)[1])
        self.tasks = tasks
        per_step = cfg.global_batch // cfg.group_size
        self.stream = PromptStream(len(tasks), per_step, cfg.seed)
        if state is not None:
            self.stream.load_state_dict(state["stream"])
        if cfg.epochs is not None:
            import dataclasses
            self.cfg = dataclasses.replace(cfg, steps=max(1, math.ceil(cfg.epochs * len(tasks) / per_step)))
        self.corpora, self.val_corpus, self.val_sft = {}, None, None
        summary.update(prompts_used=len(tasks), prompts_per_step=per_step, group_size=cfg.group_size)
        self.data_summary = summary

    def _check_references(self, tasks: list[Task]) -> tuple[list[Task], list[str]]:
        """Run every reference solution against its own tests once (cached in RUN/reference_check.json);
        drop the problems whose reference fails, since their reward would punish correct answers."""
        cache = self.run_dir / "reference_check.json"
        known = json.loads(cache.read_text()) if cache.exists() else {}
        todo = [t for t in tasks if t.problem.reference is not None and t.task_id not in known]
        if todo:
            futures = {t.task_id: self.executor.submit(Program(t.language, t.program(t.problem.reference, t.tests)))
                       for t in todo}
            for task_id, future in futures.items():
                verdict = future.result()
                known[task_id] = {"status": verdict.status, "detail": verdict.stderr[:300]}
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, json.dumps(known, indent=1))
        dropped = [t.task_id for t in tasks if known.get(t.task_id, {}).get("status", "passed") != "passed"]
        if dropped:
            shown = ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else "")
            print(f"GRPO: dropped {len(dropped)} of {len(tasks)} problems whose reference solution fails its own "
                  f"tests ({shown}); see {cache}")
        return [t for t in tasks if t.task_id not in set(dropped)], dropped

    # -------------------------------------------------------------------------------- samples log
    def _open_samples_log(self) -> None:
        path = self.run_dir / "samples.jsonl"
        if self.step and path.exists():  # a resumed run keeps the lines of the steps it kept
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        elif not self.step:
            path.unlink(missing_ok=True)
        self._samples_file = open(path, "a", encoding="utf-8")

    def _log_samples(self, step: int, samples: list[Sample]) -> None:
        for s in samples:
            sc = s.scored
            self._samples_file.write(json.dumps({
                "step": step, "task_id": s.task.task_id, "prompt_index": s.group, "sample": s.index, "seed": s.seed,
                "prompt": s.prompt, "completion": s.text, "completion_tokens": len(s.completion_ids),
                "finish_reason": s.finish_reason, "reward": sc.reward, "category": sc.category,
                "tests_passed": sc.passed, "tests_total": sc.total, "detail": sc.detail[:2000]}) + "\n")
        self._samples_file.flush()

    # -------------------------------------------------------------------------------- one step
    def score(self, task: Task, text: str, finish_reason: str | None) -> Scored:
        return self.scorer.score(task, text, finish_reason)

    def _micro_batches(self, samples: list[Sample], advantages: torch.Tensor) -> list[dict]:
        """Right-padded rows of prompt + completion, and where each completion token is predicted."""
        pad = self.tokenizer.eos_id if self.tokenizer.eos_id is not None else 0
        out = []
        micro = self.cfg.micro_batch
        for at in range(0, len(samples), micro):
            part = samples[at:at + micro]
            rows = [s.prompt_ids + s.completion_ids[:-1] for s in part]  # the last token predicts nothing trained
            width = max(len(r) for r in rows)
            first = min(len(s.prompt_ids) for s in part) - 1  # the earliest position predicting a completion token
            c_max = max(len(s.completion_ids) for s in part)
            tokens = torch.full((len(part), width), pad, dtype=torch.long)
            index = torch.zeros(len(part), c_max, dtype=torch.long)
            targets = torch.full((len(part), c_max), pad, dtype=torch.long)
            old = torch.zeros(len(part), c_max)
            mask = torch.zeros(len(part), c_max)
            for i, (s, row) in enumerate(zip(part, rows)):
                n = len(s.completion_ids)
                tokens[i, :len(row)] = torch.tensor(row)
                index[i, :n] = torch.arange(len(s.prompt_ids) - 1, len(s.prompt_ids) - 1 + n) - first
                targets[i, :n] = torch.tensor(s.completion_ids)
                old[i, :n] = torch.tensor(s.logprobs, dtype=torch.float32)
                mask[i, :n] = 1
            out.append({"tokens": tokens, "keep": width - first, "index": index, "targets": targets, "old": old,
                        "mask": mask, "advantages": advantages[at:at + micro].float()})
        return out

    def _logits(self, net, batch: dict) -> torch.Tensor:
        """(B, C, V): the logits predicting each completion token of the micro-batch."""
        device = self.world.device
        with self.autocast():
            logits, _ = net(batch["tokens"].to(device), logits_to_keep=batch["keep"])
        index = batch["index"].to(device)
        return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))

    @torch.no_grad()
    def _reference_logprobs(self, batch: dict) -> torch.Tensor:
        context = adapters_disabled(self.net) if self.ref is None else contextlib.nullcontext()
        with context:
            logits = self._logits(self.net if self.ref is None else self.ref, batch)
        return token_logprobs(logits, batch["targets"].to(logits.device))

    def _rewards(self, samples: list[Sample]) -> torch.Tensor:
        if self.reward_model is not None:  # the reward model's probability replaces the test reward
            scores = self.reward_model.score([(s.prompt, s.text) for s in samples])
            for s, value in zip(samples, scores):
                s.scored.detail = f"tests: {s.scored.category} {s.scored.passed}/{s.scored.total}; {s.scored.detail}"
                s.scored.reward = float(value)
        bad = [s for s in samples if not math.isfinite(s.scored.reward)]
        if bad:
            s = bad[0]
            raise RewardError(f"step {self.step + 1}: {len(bad)} rewards are not finite, the first {s.scored.reward} "
                              f"for {s.task.task_id} sample {s.index} ({s.text[:200]!r}); stopped before updating. "
                              f"The step's samples are in {self.run_dir / 'samples.jsonl'}")
        errors = sum(s.scored.category == "sandbox_error" for s in samples)
        if errors * 2 > len(samples):
            raise RewardError(f"step {self.step + 1}: the sandbox failed on {errors} of {len(samples)} samples "
                              f"({samples[0].scored.detail[:200]}): the rewards would measure the machine")
        return torch.tensor([s.scored.reward for s in samples], dtype=torch.float64)

    def train_step(self) -> dict:
        cfg, net = self.cfg, self.net
        lr = schedule.lr_at(cfg, self.step)
        set_lr(self.optimizer, lr)
        started = time.perf_counter()
        tasks = [self.tasks[i] for i in self.stream.take()]
        self.engine.forget_prefixes()  # computed with the weights before the last update
        samples, timing = rollout(self.engine, tasks, cfg, self.step, self.score, self.pool)
        try:
            rewards = self._rewards(samples)
        finally:
            self._log_samples(self.step + 1, samples)
        advantages = group_advantages(rewards, cfg.group_size)
        batches = self._micro_batches(samples, advantages)
        total_tokens = float(sum(len(s.completion_ids) for s in samples))
        if cfg.kl_coef:
            for batch in batches:
                batch["ref"] = self._reference_logprobs(batch)
        rolled = time.perf_counter()
        kl_sum = clipped = entropy_sum = 0.0
        gap, ratio_max, losses, norms = 0.0, 0.0, [], []
        for update in range(cfg.policy_updates):
            loss_total = 0.0
            for batch in batches:
                logits = self._logits(net, batch)
                device = logits.device
                logp = token_logprobs(logits, batch["targets"].to(device))
                mask = batch["mask"].to(device)
                out = policy_loss(logp, batch["old"].to(device), batch.get("ref"), batch["advantages"].to(device),
                                  mask, cfg.clip_eps, cfg.kl_coef, cfg.loss_norm, total_tokens, len(samples))
                out.loss.backward()
                loss_total += float(out.loss.detach())
                clipped += float(out.clipped)
                ratio_max = max(ratio_max, float(out.ratio_max))
                if update == 0:
                    real = mask > 0
                    kl_sum += float(out.kl)
                    entropy_sum += float(torch.where(real, token_entropy(logits.detach()), 0.0).sum())
                    diff = torch.where(real, (logp.detach() - batch["old"].to(device)).abs(), 0.0).max()
                    gap = float(diff) if not math.isfinite(float(diff)) else max(gap, float(diff))
            grad_norm = _grad_norm(self.model, cfg.grad_clip)
            if not (math.isfinite(loss_total) and math.isfinite(grad_norm)):
                self.optimizer.zero_grad(set_to_none=True)
                last = checkpoint.latest(self.run_dir)
                raise TrainingDiverged(f"step {self.step + 1}: GRPO loss {loss_total}, gradient norm {grad_norm}; "
                                       f"stopped before updating. The last good checkpoint is {last or 'none'}")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss_total)
            norms.append(grad_norm)
        seconds = time.perf_counter() - started
        self.step += 1
        self.tokens += int(total_tokens)
        return self._record(samples, rewards, lr, losses, norms, kl_sum / total_tokens, entropy_sum / total_tokens,
                            clipped / (total_tokens * cfg.policy_updates), gap, ratio_max, timing, rolled - started,
                            seconds)

    def _record(self, samples, rewards, lr, losses, norms, kl, entropy, clip_fraction, gap, ratio_max, timing,
                rollout_s, seconds) -> dict:
        cfg = self.cfg
        groups = rewards.view(-1, cfg.group_size)
        counts = Counter(s.scored.category for s in samples)
        return {"step": self.step, "tokens": self.tokens, "loss": losses[0], "lr": lr, "grad_norm": norms[-1],
                "reward": float(rewards.mean()), "pass_rate": counts["passed"] / len(samples),
                "tests_passed": sum(s.scored.passed for s in samples) / max(1, sum(s.scored.total for s in samples)),
                "reward_std_in_group": float(groups.std(dim=1).mean()),
                "zero_variance_groups": float((groups.std(dim=1) == 0).double().mean()),
                "kl": kl, "entropy": entropy, "clip_fraction": clip_fraction, "ratio_max": ratio_max,
                "logprob_gap": gap,
                "completion_tokens": float(np.mean([len(s.completion_ids) for s in samples])),
                "truncated": sum(s.finish_reason == "length" for s in samples) / len(samples),
                "verdicts": {c: counts[c] for c in CATEGORIES},
                "samples_per_s": len(samples) / seconds, "rollout_s": rollout_s, "generate_s": timing.generate_s,
                "reward_wait_s": timing.reward_wait_s, "seconds": seconds,
                "memory_gib": metrics.memory_gib(self.world.device)}

    def evaluate(self) -> dict:
        return {}

    def baseline(self) -> dict:
        return {}

    # -------------------------------------------------------------------------------- run
    def run(self) -> RunResult:
        cfg = self.cfg
        losses: list[float] = []
        first = last = {}
        saved = checkpoint.latest(self.run_dir) if cfg.resume else None
        with _progress(self.show_progress, cfg.steps, self.step, _describe) as bar:
            while self.step < cfg.steps:
                record = self.train_step()
                losses.append(record["loss"])
                last = {k: record[k] for k in ("reward", "pass_rate", "tests_passed", "kl")}
                first = first or last
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self.log.write(record)
                if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == cfg.steps:
                    saved = self.save()
                bar(record)
        self.log.close()
        write_report(self.run_dir)
        summary = {**{f"first_{k}": v for k, v in first.items()}, **last}  # of the steps this process ran
        return RunResult(self.run_dir, self.step, saved, losses, summary, self.world.is_main)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
        if self.executor is not None:
            self.executor.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self._samples_file is not None:
            self._samples_file.close()
        self.log.close()


def _describe(record: dict) -> str:
    return (f"reward {record['reward']:.3f} pass {record['pass_rate']:.1%} KL {record['kl']:.4f} "
            f"len {record['completion_tokens']:.0f} {record['samples_per_s']:.2f} samples/s")


def write_report(run_dir: Path) -> Path:
    """RUN/report.md: the steps' rewards and verdicts, and a few samples whose verdict was refused."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    lines = ["# GRPO run", "", "| step | reward | pass rate | tests passed | KL | zero-variance groups | "
             "verdicts |", "|---|---|---|---|---|---|---|"]
    for r in records:
        if "reward" not in r:
            continue
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items() if v)
        lines.append(f"| {r['step']} | {r['reward']:.3f} | {r['pass_rate']:.1%} | {r['tests_passed']:.1%} | "
                     f"{r['kl']:.4f} | {r['zero_variance_groups']:.0%} | {verdicts} |")
    refused = []
    samples = run_dir / "samples.jsonl"
    if samples.exists():
        for line in samples.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["category"] == "refused":
                refused.append(row)
    lines += ["", f"## Refused verdicts: {len(refused)}", "",
              "Samples that left before their checks finished or returned values that are not plain data; "
              "they score `reward_refused`, never a pass."]
    for row in refused[:REFUSED_SHOWN]:
        lines += ["", f"### step {row['step']}, {row['task_id']}, sample {row['sample']}", "", "```",
                  row["completion"][:1500].replace("```", "'''"), "```", "", f"> {row['detail'][:500]}"]
    path = run_dir / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def train_grpo(cfg: TrainConfig, progress: bool = True, tasks: list[Task] | None = None) -> RunResult:
    """Run (or resume) GRPO; `tasks` replaces --prompts (tests and benchmarks build their own)."""
    trainer = GrpoTrainer(cfg, progress, tasks)
    try:
        return trainer.run()
    finally:
        trainer.close()


__all__ = ["GrpoTrainer", "PromptStream", "RewardError", "train_grpo", "write_report"]
