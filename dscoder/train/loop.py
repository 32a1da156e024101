"""The training loop: corpus rows in, checkpoints and metrics out, on one process or many.

One loop serves pretraining and context extension (and, in later issues, SFT and GRPO as a
loss mask and a reward on the same loop). A step is: this rank's share of the global batch
from the `RowStream`, split into micro-batches whose gradients accumulate (synchronised across
processes only on the last one), next-token cross-entropy (the FIM documents are in the
rows already) plus the MoE balance loss, gradient clipping, the LR of the schedule, AdamW.

Exactness: the loop draws no random numbers after initialisation, the stream's position and the
optimizer state are checkpointed exactly, and the weights are saved in fp32, so a run killed
and resumed from its last checkpoint computes, on a CPU, the same losses bit for bit as one that
was never stopped (tests/train/test_resume.py kills a real process to show it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dscoder import hub
from dscoder.data.pack import tokenizer_digest
from dscoder.errors import UserError
from dscoder.files import write_atomic
from dscoder.model.config import ModelConfig
from dscoder.model.transformer import Block, Transformer
from dscoder.settings import as_dict, identity
from dscoder.train import adapt, checkpoint, distributed, metrics, schedule, validate
from dscoder.train.config import TrainConfig, TrainConfigError
from dscoder.train.corpus import Corpus, RowStream, corpus_windows, validation_batches
from dscoder.train.mixture import check_drawn, resolve_sources
from dscoder.train.objective import Batch, next_token_loss
from dscoder.train.optim import build_optimizer, set_lr


# sft: instruction rows with a loss mask (train/sft.py); pretrain: corpus rows; grpo: rollouts rewarded in the
# sandbox (train/grpo.py, a Trainer whose data and step are its own)
TASKS = ("pretrain", "sft", "grpo")


class TrainingDiverged(UserError):
    """The loss or the gradient became NaN or infinite; the run stops before the update."""


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (disk full...); the earlier ones are intact."""


class RunDirectoryError(UserError):
    """The output directory holds another run (or this one without --resume)."""


@dataclass
class RunResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    losses: list[float]  # the training loss of every step this process ran
    last_eval: dict
    is_main: bool = True


# ------------------------------------------------------------------------------------------- set-up
def _settings_json(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(identity(cfg), default=list))


def _check_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse a directory holding another run's different settings, or this run's without --resume."""
    saved = run_dir / "run.json"
    if not saved.exists():
        return
    if cfg.resume:
        return
    before = json.loads(saved.read_text()).get("settings", {})
    now = _settings_json(cfg)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k) and k != "resume")
    if changed:
        diff = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        raise RunDirectoryError(f"{run_dir} holds a run with other settings ({diff}); choose another --out, "
                                "or pass --resume to continue that run with these settings")
    if checkpoint.latest(run_dir) is not None:
        raise RunDirectoryError(f"{run_dir} already holds this run's checkpoints; pass --resume to continue it "
                                "or choose another --out")


def _extended_config(model_cfg: ModelConfig, cfg: TrainConfig) -> ModelConfig:
    changes = {}
    if cfg.rope_scaling is not None:
        changes["rope_scaling"] = dict(cfg.rope_scaling)
    if cfg.rope_theta is not None:
        changes["rope_theta"] = float(cfg.rope_theta)
    if cfg.max_position_embeddings is not None:
        changes["max_position_embeddings"] = int(cfg.max_position_embeddings)
    return model_cfg.replace(**changes) if changes else model_cfg


def _initializer_std(model_cfg: ModelConfig) -> float:
    return float(model_cfg.extra.get("initializer_range", 0.02))


def _build_model(cfg: TrainConfig, resume_dir: Path | None) -> tuple[Transformer, str]:
    """The network in fp32 on the CPU (LoRA-wrapped when cfg asks), and where its tokenizer is."""
    if resume_dir is not None and checkpoint.is_adapter(resume_dir):  # a LoRA run: its base, then its adapter
        return adapt.restore(hub.load_model(cfg.model), cfg, resume_dir), str(resume_dir)
    if resume_dir is not None:
        return hub.load_model(resume_dir), str(resume_dir)
    net, tokenizer_from = _load_start(cfg)
    return adapt.prepare(net, cfg), tokenizer_from


def _load_start(cfg: TrainConfig) -> tuple[Transformer, str]:
    if cfg.model is None and cfg.scratch:
        raise TrainConfigError("--scratch needs --model: a preset or a directory holding the config.json to train")
    if cfg.scratch:
        _, model_cfg = hub.describe(cfg.model)
        model_cfg = _extended_config(model_cfg, cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        net = Transformer(model_cfg).init_weights(_initializer_std(model_cfg), generator)
        return net, cfg.tokenizer or str(cfg.model)
    net = hub.load_model(cfg.model)
    new_cfg = _extended_config(net.config, cfg)
    if new_cfg != net.config:  # new RoPE frequencies are made at construction
        extended = Transformer(new_cfg)
        extended.load_state_dict(net.state_dict())
        net = extended
    return net, cfg.tokenizer or str(hub.resolve(cfg.model))


def _starting_lr(cfg: TrainConfig) -> float:
    """Extension recipes train at the final LR of the run they start from (V1 paper, section 3.5)."""
    source = Path(cfg.model) if cfg.model else None
    if source is not None and (source / checkpoint.STATE_FILE).is_file():
        lr = checkpoint.load_state(source).get("lr")
        if lr:
            return float(lr)
    raise TrainConfigError(f"this recipe trains at the final LR of the checkpoint it starts from, but {cfg.model} "
                           "has no train_state.pt recording one; give it with --set lr=VALUE")


def _autocast(cfg: TrainConfig, device: torch.device):
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, torch.float32
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16), torch.bfloat16


def _checkpointed(block: Block):
    forward = block.forward

    def run(*args):
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False)
    return run


def _wrap(net: Transformer, cfg: TrainConfig, world: distributed.World) -> nn.Module:
    """Activation checkpointing and compilation per block, then DDP or FSDP2 across processes."""
    for block in net.layers:
        if cfg.activation_checkpointing:
            block.forward = _checkpointed(block)
        if cfg.compile:
            block.compile()
    if not world.distributed:
        return net
    parallel = "ddp" if cfg.parallel == "auto" else cfg.parallel
    if parallel == "fsdp" and adapt.is_adapted(net):
        raise TrainConfigError("LoRA runs replicate the frozen base with DDP (parallel=ddp); FSDP2 sharding of "
                               "adapters is not built")
    # An MoE expert that no token of this rank's micro-batch reached gets no gradient here while
    # it gets one on another rank: DDP must look for such parameters (else its buckets never
    # complete and the ranks' collectives fall out of step) and FSDP2 must reduce zeros for them
    # (else the ranks' reduce-scatters differ in size).
    moe = bool(net.config.n_routed_experts)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in net.layers:
            fully_shard(block)
        fully_shard(net)
        if moe:
            net.set_reduce_scatter_unused_params(True)
        return net
    return DistributedDataParallel(net, device_ids=[world.device.index] if world.device.type == "cuda" else None,
                                   find_unused_parameters=moe)


def _inner(model: nn.Module) -> Transformer:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _sync_context(model: nn.Module, sync: bool):
    """Gradient synchronisation only on the last micro-batch of a step."""
    if isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def _grad_norm(model: nn.Module, clip: float) -> float:
    """Clip and return the global gradient norm. A parameter that got no gradient this step (an MoE
    expert no token was routed to) gets a zero one first, so AdamW treats it the same on one process,
    under DDP (which leaves it None when no rank used it) and under FSDP2 (which reduces zeros for it),
    as transformers' fused experts do: decayed and moved by its momentum."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


# ------------------------------------------------------------------------------------------- the loop
class Trainer:
    """Holds a run's pieces between steps; `train(cfg)` builds one and runs it."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, task: str = "pretrain") -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.world = distributed.setup(cfg.device)
        self.run_dir = Path(cfg.out)
        _check_run_dir(self.run_dir, cfg)
        resume_dir = checkpoint.latest(self.run_dir) if cfg.resume else None
        state = checkpoint.load_state(resume_dir) if resume_dir else None
        if cfg.lr is None:
            cfg = dataclasses.replace(cfg, lr=state["lr_peak"] if state else _starting_lr(cfg))
        cfg.validate()
        self.cfg = self.given_cfg = cfg
        self.data_summary: dict = {}
        net, tokenizer_from = _build_model(cfg, resume_dir)
        self.model_cfg = net.config
        if task != "grpo" and cfg.seq_len > self.model_cfg.max_position_embeddings:  # GRPO's rows are its rollouts
            raise TrainConfigError(f"seq_len {cfg.seq_len} exceeds the model's context (max_position_embeddings="
                                   f"{self.model_cfg.max_position_embeddings}); extend it first (dscoder train "
                                   "extend) or train shorter rows")
        self.tokenizer = hub.load_tokenizer(tokenizer_from)
        self._open(state)
        cfg = self.cfg  # an SFT run's steps come from its epochs
        if self.world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_dir / "run.json", json.dumps(
                {"task": task, "settings": _settings_json(self.given_cfg), "all_settings": as_dict(cfg),
                 "world_size": self.world.size, "model_config": self.model_cfg.to_hf(),
                 "data": self.data_summary}, indent=1, default=list))
        distributed.barrier()
        net.to(self.world.device)
        self.net = net
        self.moe_load = metrics.MoeLoad(net)
        self.model = _wrap(net, cfg, self.world)
        self.model.train()
        self.optimizer = build_optimizer(self.model, cfg)
        self.step = 0
        self.tokens = 0
        if state is not None:
            checkpoint.restore(self.model, self.optimizer, state, self.world.rank)
            self.step, self.tokens = state["step"], state.get("tokens", 0)
        self.autocast, self.compute_dtype = _autocast(cfg, self.world.device)
        self.flops_per_token = metrics.flops_per_token(self.model_cfg, cfg.seq_len)
        self.peak_flops = metrics.peak_flops(self.world.device, self.compute_dtype)
        self.log = metrics.MetricsLog(self.run_dir, self.world.is_main, self.step if state is not None else None)
        self.show_progress = progress and self.world.is_main
        self.last_eval: dict = {}

    # -------------------------------------------------------------------------------- data
    def _open(self, state: dict | None) -> None:
        """Open the task's data (and set self.stream, whose state checkpoints carry)."""
        if self.task == "sft":
            self._open_sft(state)
        else:
            self._open_data(state)

    def _open_data(self, state: dict | None) -> None:
        cfg = self.cfg
        sources, weights = resolve_sources(cfg.mix, [p for p in cfg.data.split(",") if p.strip()])
        digest = tokenizer_digest(self.tokenizer)
        corpora = {}
        for name, path in sources.items():
            corpus = Corpus(path, "train")
            corpus.check_tokenizer(digest, self.model_cfg.vocab_size, str(self.tokenizer.source))
            corpora[name] = corpus
        self.stream = RowStream(corpora, weights, cfg.seq_len, cfg.seed, self.world.rank, self.world.size)
        if state is not None:
            self.stream.load_state_dict(state["stream"])
        self.corpora = corpora
        self.val_sft = None
        if cfg.epochs is not None:
            rows = sum(c.rows(cfg.seq_len) for c in corpora.values())
            self.cfg = dataclasses.replace(cfg, steps=max(1, math.ceil(cfg.epochs * rows / cfg.global_batch)))
            self.data_summary = {"rows_per_epoch": rows}
        first = next(iter(sources.values()))
        try:
            self.val_corpus = Corpus(first, "validation")
        except UserError:
            self.val_corpus = None  # a corpus built with --val-fraction 0
        self._check_batch()

    def _check_batch(self) -> None:
        cfg = self.cfg
        if cfg.global_batch % self.world.size:
            raise TrainConfigError(f"global_batch {cfg.global_batch} is not divisible by the {self.world.size} "
                                   "processes")
        local = cfg.global_batch // self.world.size
        if local % cfg.micro_batch:
            raise TrainConfigError(f"each process's share of the batch ({local} rows) is not a multiple of "
                                   f"micro_batch {cfg.micro_batch}")

    def _open_sft(self, state: dict | None) -> None:
        """Instruction data (`--data FILE.jsonl`), corpus rows (FIM documents among them) mixed in, a seeded
        held-out share."""
        from dscoder.train.sft import SftData, SftStream, read_sft

        cfg = self.cfg
        data = read_sft(cfg.data, self.tokenizer, cfg.seq_len)
        if cfg.fim_data and cfg.fim_fraction:
            corpus = Corpus(cfg.fim_data, "train")
            corpus.check_tokenizer(tokenizer_digest(self.tokenizer), self.model_cfg.vocab_size,
                                   str(self.tokenizer.source))
            wanted = round(len(data.samples) * cfg.fim_fraction / (1 - cfg.fim_fraction))
            data.add_documents(corpus_windows(corpus, wanted, cfg.seq_len, cfg.seed))
        order = np.random.default_rng(cfg.seed).permutation(len(data.samples))
        n_val = int(len(order) * cfg.sft_val_fraction)
        if n_val == 0 and cfg.sft_val_fraction and len(order) >= 20:
            n_val = 1
        held = set(order[:n_val].tolist())
        train = SftData([x for i, x in enumerate(data.samples) if i not in held], data.truncated, data.dropped,
                        data.max_len)
        self.val_sft = SftData([data.samples[i] for i in sorted(held)], max_len=data.max_len) if held else None
        if not train.samples:
            raise TrainConfigError(f"{cfg.data} leaves no training sample after the held-out share")
        pad = self.tokenizer.eos_id if self.tokenizer.eos_id is not None else 0
        self.stream = SftStream(train, cfg.seq_len, cfg.pack, cfg.seed, self.world.rank, self.world.size, pad)
        if state is not None:
            self.stream.load_state_dict(state["stream"])
        self.corpora, self.val_corpus = {}, None
        if cfg.epochs is not None:
            steps = max(1, math.ceil(cfg.epochs * self.stream.rows_per_epoch / cfg.global_batch))
            self.cfg = dataclasses.replace(cfg, steps=steps)
        self.data_summary = {**self.stream.describe(self.cfg.global_batch),
                             "held_out_samples": len(held), "documents_mixed_in": sum(1 for x in train.samples
                                                                                      if x.line == 0)}
        self._check_batch()

    def _val_batches(self, seq_len: int | None = None):
        seq_len = seq_len or self.cfg.seq_len
        if self.val_corpus is None or self.val_corpus.rows(seq_len) < self.world.size:
            return None
        return validation_batches(self.val_corpus, seq_len, self.cfg.micro_batch, self.world.rank, self.world.size,
                                  max_rows=self.cfg.eval_rows)

    # -------------------------------------------------------------------------------- one step
    def train_step(self) -> dict:
        """One optimizer step. The loss is the mean over every scored target of the global batch (one
        mean over tokens, as transformers computes it for one batch, however the batch is cut into
        micro-batches and processes); for pretraining rows every micro-batch has the same number of
        targets, so this is also the mean of the micro-batches' means."""
        cfg, model = self.cfg, self.model
        lr = schedule.lr_at(cfg, self.step)
        set_lr(self.optimizer, lr)
        started = time.perf_counter()
        batch = self.stream.next_batch(cfg.global_batch)
        if isinstance(batch, torch.Tensor):
            batch = Batch.of_rows(batch)
        micro = batch.split(cfg.micro_batch)
        local_rows = batch.tokens.shape[0]
        counts = torch.tensor([batch.targets(), batch.real_tokens()], dtype=torch.float64)
        counts = distributed.all_reduce_sum(counts.to(self.world.device)).cpu()
        targets, real_tokens = max(counts[0].item(), 1.0), int(counts[1].item())
        # DDP and FSDP average the gradients over processes: a rank's sum is scaled by world / targets
        ce_scale = self.world.size / targets
        sums = torch.zeros(2, dtype=torch.float64)  # ce summed over targets, aux * rows
        for i, part in enumerate(micro):
            x = part.tokens.to(self.world.device, non_blocking=True)
            labels = part.labels.to(self.world.device, non_blocking=True)
            extra = {} if part.segments is None else {"segments": part.segments.to(self.world.device)}
            with _sync_context(model, i == len(micro) - 1):
                with self.autocast():
                    logits, aux = model(x, **extra)
                ce_sum = next_token_loss(logits, labels, reduction="sum")
                share = x.shape[0] / local_rows
                (ce_sum * ce_scale + aux * share).backward()
            sums[0] += ce_sum.detach().double().cpu()
            sums[1] += aux.detach().double().cpu() * x.shape[0]
        totals = distributed.all_reduce_sum(sums.to(self.world.device)).cpu()
        ce_mean, aux_mean = totals[0].item() / targets, totals[1].item() / cfg.global_batch
        grad_norm = _grad_norm(model, cfg.grad_clip)
        if not (math.isfinite(ce_mean) and math.isfinite(aux_mean) and math.isfinite(grad_norm)):
            last = checkpoint.latest(self.run_dir)
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"step {self.step + 1}: loss {ce_mean} (MoE balance {aux_mean}), gradient norm {grad_norm}; stopped "
                f"before updating the weights. The last good checkpoint is "
                f"{last if last else 'none (no checkpoint was written yet)'}; lower the LR (--set lr=...) and "
                f"resume from it with --resume")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.world.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        self.step += 1
        step_tokens = real_tokens
        self.tokens += step_tokens
        tok_s = step_tokens / seconds
        record = {"step": self.step, "tokens": self.tokens, "loss": ce_mean, "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_s": tok_s, "mfu": tok_s * self.flops_per_token / (self.peak_flops * self.world.size),
                  "memory_gib": metrics.memory_gib(self.world.device), "seconds": seconds}
        if self.model_cfg.n_routed_experts:
            record["moe_aux_loss"] = aux_mean
            record["moe_max_over_mean"] = self.moe_load.take()
        return record

    # -------------------------------------------------------------------------------- validation
    def evaluate(self) -> dict:
        net = _inner(self.model)
        net.eval()
        try:
            out = {}
            if self.task == "sft":
                return self._sft_eval(net)
            batches = self._val_batches()
            if batches is not None:
                out.update(validate.validation_loss(net, batches, self._byte_lengths, self.world.device,
                                                    self.autocast))
            out.update(self._fim_eval(net))
        finally:
            net.train()
        return out

    def _sft_eval(self, net) -> dict:
        """Mean loss over the trained tokens of the held-out samples (the same rows every time)."""
        if self.val_sft is None:
            return {}
        from dscoder.train.sft import SftStream

        stream = SftStream(self.val_sft, self.cfg.seq_len, self.cfg.pack, self.cfg.seed, self.world.rank,
                           self.world.size, self.tokenizer.eos_id or 0)
        rows = min(stream.rows_per_epoch, self.cfg.eval_rows)
        rows -= rows % self.world.size
        if rows < self.world.size:
            return {}
        return validate.masked_loss(net, stream.next_batch(rows).split(self.cfg.micro_batch), self.world.device,
                                    self.autocast)

    @functools.cached_property
    def _byte_lengths(self) -> torch.Tensor:
        """UTF-8 bytes per id (0 for special tokens and the embedding rows past the vocabulary)."""
        pad = max(0, self.model_cfg.vocab_size - self.tokenizer.vocab_size)
        return torch.tensor(self.tokenizer.byte_lengths() + [0] * pad, dtype=torch.float64)

    @functools.cached_property
    def _fim_examples(self) -> list[validate.FimExample]:
        """Held-out FIM documents for `fim_exact_match`, found once (none without FIM tokens)."""
        if not self.cfg.fim_eval or self.val_corpus is None:
            return []
        from dscoder.data.fim import token_ids
        from dscoder.tokenizer.fim import FimUnsupportedError, fim_tokens
        try:
            ids = token_ids(self.tokenizer, fim_tokens(self.tokenizer))
        except FimUnsupportedError:
            return []
        n = min(self.val_corpus.tokens, 4_000_000)
        side = max(16, min(self.cfg.seq_len, self.model_cfg.max_position_embeddings) // 2 - 40)
        return validate.fim_examples(self.val_corpus.window(0, n), ids, self.tokenizer.eos_id, self.cfg.fim_eval,
                                     side)

    def _fim_eval(self, net) -> dict:
        examples = self._fim_examples
        return validate.fim_exact_match(net, self.tokenizer, examples) if examples else {}

    def baseline(self) -> dict:
        """The unigram loss of the validation rows: what a model ignoring context reaches."""
        if self.task == "sft":
            return {}
        batches = self._val_batches()
        if batches is None:
            return {}
        corpus = next(iter(self.corpora.values()))
        sample = corpus.window(0, min(corpus.tokens, 2_000_000))
        targets = np.concatenate([b[:, 1:].numpy().ravel() for b in batches])
        return {"unigram_loss": validate.unigram_loss(sample, targets, self.model_cfg.vocab_size)}

    # -------------------------------------------------------------------------------- checkpoints
    def save(self) -> Path:
        state = {"stream": self.stream.state_dict(), "lr": schedule.lr_at(self.cfg, max(self.step - 1, 0)),
                 "lr_peak": self.cfg.lr, "tokens": self.tokens, "settings": as_dict(self.cfg)}
        try:
            write_adapter = None
            if adapt.is_adapted(self.net):
                def write_adapter(directory: Path) -> None:
                    adapt.save(self.net, directory, self.cfg, str(self.cfg.model) if self.cfg.model else None)
            return checkpoint.save(self.run_dir, self.step, self.model, self.optimizer, self.model_cfg,
                                   self.tokenizer, state, self.cfg.keep_last, self.world.is_main, write_adapter)
        except OSError as e:  # a full disk, a quota, a file size limit: say what survives
            last = checkpoint.latest(self.run_dir)
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {self.step} to {checkpoint.step_dir(self.run_dir, self.step)}"
                f": {e.strerror or e}. Nothing was half-written; the last complete checkpoint is "
                f"{last if last else 'none'}. Free space and run the same command with --resume") from None

    # -------------------------------------------------------------------------------- run
    def run(self) -> RunResult:
        cfg = self.cfg
        losses: list[float] = []
        saved = checkpoint.latest(self.run_dir) if cfg.resume else None
        if self.step == 0:
            first = {"step": 0, "tokens": 0, **self.baseline(), **self.evaluate()}
            self.last_eval = first
            self.log.write(first)
        with _progress(self.show_progress, cfg.steps, self.step) as bar:
            while self.step < cfg.steps:
                record = self.train_step()
                losses.append(record["loss"])
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    self.last_eval = self.evaluate()
                    record.update(self.last_eval)
                if self.step == cfg.steps:
                    self.last_eval = self.evaluate()
                    record.update(self.last_eval)
                    if len(self.corpora) > 1:
                        record["mixture"] = {name: round(c.actual, 4) for name, c in
                                             check_drawn(self.stream.drawn(),
                                                         dict(zip(self.stream.names, self.stream.weights))).items()}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self.log.write(record)
                if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == cfg.steps:
                    saved = self.save()
                bar(record)
        self.log.close()
        return RunResult(self.run_dir, self.step, saved, losses, self.last_eval, self.world.is_main)

    # -------------------------------------------------------------------------------- extension
    def positions(self, buckets: int = 8) -> list[dict] | None:
        batches = self._val_batches()
        if batches is None:
            return None
        net = _inner(self.model)
        net.eval()
        try:
            return validate.loss_by_position(net, batches, self.cfg.seq_len, buckets, self.world.device,
                                             self.autocast)
        finally:
            net.train()

    def write_extension(self, before: list[dict] | None) -> None:
        after = self.positions()
        path = self.run_dir / "extension.json"
        if before is None and path.exists():  # a resumed extension keeps the first run's "before"
            before = json.loads(path.read_text()).get("before")
        scaling = self.model_cfg.rope_scaling or {}
        original = scaling.get("original_max_position_embeddings") or (
            self.model_cfg.max_position_embeddings // scaling["factor"] if "factor" in scaling else None)
        if self.world.is_main:
            write_atomic(path, json.dumps({"seq_len": self.cfg.seq_len, "original_context": original,
                                           "rope_scaling": self.model_cfg.rope_scaling,
                                           "rope_theta": self.model_cfg.rope_theta, "before": before,
                                           "after": after}, indent=1))


def _describe(record: dict) -> str:
    text = (f"loss {record['loss']:.4f} lr {record['lr']:.2e} |g| {record['grad_norm']:.2f} "
            f"{record['tokens_per_s']:,.0f} tok/s MFU {record['mfu']:.1%}")
    if "val_loss" in record:
        text += f" val {record['val_loss']:.4f}"
    return text


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, describe=_describe):
    """A rich bar with what `describe(record)` says of each step (loss, LR and throughput); a no-op on
    other ranks and when disabled."""
    if not enabled:
        yield lambda record: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("", total=total, completed=done)

        def update(record: dict) -> None:
            progress.update(task, completed=record["step"], description=describe(record))
        yield update


def train(cfg: TrainConfig, progress: bool = True, extend: bool = False, task: str = "pretrain") -> RunResult:
    """Run (or resume) a training run; on several processes every rank calls this.

    `extend`: a context extension (the RoPE settings of `cfg` are applied to the model): the
    validation loss by position is measured over the new row length before and after training
    and written to `RUN/extension.json` (the plot's fourth panel)."""
    trainer = Trainer(cfg, progress, task)
    try:
        before = trainer.positions() if extend and trainer.step == 0 else None
        result = trainer.run()
        if extend:
            trainer.write_extension(before)
        return result
    finally:
        trainer.log.close()
