"""A training run's settings, declared once, and the named recipes of the DeepSeek-Coder papers.

Every hyper-parameter is a field of `TrainConfig` with its default and help text. A run is
the defaults, then a recipe's values (`--recipe v1-1.3b`), then the user's `--set key=value`
pairs, in that order; `dscoder train recipes` prints them. The settings that say what a run
produces (everything but `run=True` fields) are written to `RUN/run.json`; a second run in the
same directory must match them or pass `--resume` (and then still match).

Sources of the recipes (the papers give the numbers; where they do not, the choice is ours
and says so):

- DeepSeek-Coder (V1), arXiv 2401.14196, section 3.4 and Table 2: AdamW β1 0.9, β2 0.95,
  weight decay 0.1, gradient clip 1.0; 2000 warm-up steps, then a three-stage schedule where
  each stage's LR is √(1/10) of the previous one, ending at 10% of the peak; 1.3B: LR 5.3e-4,
  1024 sequences; 6.7B: 4.2e-4, 2304; 33B: 3.5e-4, 3840; sequence length 4096. Context
  extension (section 3.5): linear RoPE factor 1 → 4, θ 10000 → 100000, 1000 steps at 16K,
  batch 512, at the final LR.
- DeepSeek-V2, arXiv 2405.04434, and DeepSeek-Coder-V2, arXiv 2406.11931: the same AdamW
  and clip; warm-up 2000 steps then cosine decay to 10% of the peak; V2-Lite LR 4.2e-4 with
  4608 sequences of 4096; the MoE balance loss α from the model config (0.001 for Lite).
  Context extension with YaRN s=40, α=1, β=32: 1000 steps at 32K (batch 1152), then 1000 at
  128K (batch 288).
"""

from __future__ import annotations

import dataclasses
import math
import types as types_module
import typing
from dataclasses import dataclass
from typing import Any

from dscoder.errors import UserError
from dscoder.hub import ModelChoice
from dscoder.settings import MISSING, like, setting

SCHEDULES = ("v1-multistep", "v2-cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # --compute-dtype's choices, as --dtype's elsewhere; fp16 is refused
PARALLEL = ("auto", "ddp", "fsdp")


class TrainConfigError(UserError):
    """A training setting, recipe or `--set` pair is invalid."""


@dataclass
class TrainConfig:
    """Settings of `dscoder train pretrain` / `extend` (the command line shows each field's help)."""

    # --- where from, where to (command-line options of their own) -----------------------------------------
    data: str = setting(MISSING, "Corpus directory from `dscoder data build`, or several as NAME=DIR,NAME=DIR "
                                 "(read together by --mix); for `train sft` a JSONL file of chats or "
                                 "instruction/output rows.", "--data", "-d")
    out: str = setting(MISSING, "Run directory: checkpoints/, metrics.jsonl, TensorBoard events, run.json.",
                       "--out", "-o")
    model: str | None = setting(None, "Model to start from: HF directory, .gguf, preset or HF repo id. With "
                                      "--scratch only its config.json is used (a directory holding just config.json "
                                      "and a tokenizer is enough).", "--model", "-m")
    scratch: bool = setting(False, "Initialise the weights from scratch (normal, std = the config's "
                                   "initializer_range, 0.02 if absent) instead of loading them.", "--scratch")
    tokenizer: str | None = setting(None, "Tokenizer of the model (default: the model's own); its hash must match "
                                          "the corpus's.", "--tokenizer", "-t")
    mix: str | None = setting(None, "Mixture weights NAME=W,... for several corpora, or a preset: v1 (code 87%, "
                                    "code-related English 10%, Chinese 3%) or v2 (code 60%, math 10%, text 30%). "
                                    "Default: in proportion to their sizes.", "--mix")
    # --- what is trained (recipe values; change with --set key=value) --------------------------------------
    seq_len: int = setting(4096, "Tokens per training row (rows are cut from the corpus's token stream, so any "
                                 "length works with any corpus).", cli=False)
    global_batch: int = setting(1024, "Rows per optimizer step over all processes (reached by gradient "
                                      "accumulation).", cli=False)
    micro_batch: int = setting(1, "Rows per forward/backward in one process.", cli=False)
    steps: int = setting(1000, "Optimizer steps of the run (the schedule's length).", cli=False)
    lr: float | None = setting(5.3e-4, "Peak learning rate (after warm-up). None (extension recipes): the final LR "
                                       "in the starting checkpoint's train_state.pt.", cli=False)
    min_lr_ratio: float = setting(0.1, "Final learning rate as a fraction of the peak.", cli=False)
    schedule: str = setting("v1-multistep", "v1-multistep (three stages, x sqrt(0.1) each), v2-cosine, or constant.",
                            cli=False, choices=SCHEDULES)
    warmup_steps: int = setting(2000, "Linear warm-up steps (the papers' 2000); capped at warmup_max_fraction of "
                                      "the run so a tiny run still spends most steps learning.", cli=False)
    warmup_max_fraction: float = setting(0.05, "Largest share of the run's steps spent warming up.", cli=False)
    stage_boundaries: tuple[float, float] = setting(
        (0.8, 0.9), "Fractions of the steps where the v1-multistep LR drops by sqrt(0.1) (ours: DeepSeek LLM's "
                    "80%/90%; the Coder paper gives none).", cli=False)
    weight_decay: float = setting(0.1, "AdamW weight decay of matrices and embeddings (norm gains and biases are "
                                       "exempt).", cli=False)
    beta1: float = setting(0.9, "AdamW beta1.", cli=False)
    beta2: float = setting(0.95, "AdamW beta2.", cli=False)
    eps: float = setting(1e-8, "AdamW epsilon.", cli=False)
    grad_clip: float = setting(1.0, "Clip the global gradient norm to this (0: no clipping).", cli=False)
    seed: int = setting(0, "Seed of the weights' initialisation and of the data order.", cli=False)
    # --- fine-tuning (train sft, finetune) -----------------------------------------------------------------
    epochs: float | None = setting(None, "Passes over the data (SFT samples, or the corpus's rows); when set, the "
                                         "run's steps are ceil(epochs x rows per epoch / global_batch). A --set "
                                         "steps=N without --set epochs drops a recipe's epochs.", cli=False)
    pack: bool = setting(True, "Pack several SFT samples into each row, attention confined to each sample (False: "
                               "one sample per row, padded to the batch's longest).", cli=False)
    sft_val_fraction: float = setting(0.02, "Share of the SFT samples held out (seeded) for the validation loss; at "
                                            "most eval_rows rows of them are scored.", cli=False)
    fim_data: str | None = setting(None, "A corpus directory from `dscoder data build` whose rows (its FIM documents "
                                         "among them) are mixed into SFT, fully trained (V2 kept FIM alive through "
                                         "fine-tuning this way).", "--fim-data")
    fim_fraction: float = setting(0.0, "Share of the SFT samples that are --fim-data rows of seq_len tokens.",
                                  cli=False)
    lora_rank: int = setting(0, "LoRA rank r (0: full fine-tuning). The base is frozen; only the adapters train.",
                             cli=False)
    lora_alpha: float = setting(16.0, "LoRA alpha: the adapter's product is scaled by alpha / r.", cli=False)
    lora_dropout: float = setting(0.05, "Dropout on the LoRA branch's input.", cli=False)
    lora_targets: str = setting("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,q_a_proj,q_b_proj,"
                                "kv_a_proj_with_mqa,kv_b_proj",
                                "Comma-separated projection names that get adapters (those absent from the model "
                                "are ignored).", cli=False)
    trainable_tokens: tuple[int, ...] = setting((), "Token ids whose embedding (and untied output) rows train beside "
                                                    "LoRA; finetune --add-fim-tokens sets its new tokens.", cli=False)
    base_quant: str = setting("none", "none or int8: keep the frozen base in int8 (QLoRA-style; needs lora_rank > 0).",
                              cli=False, choices=("none", "int8"))
    # --- reinforcement learning (train grpo) ---------------------------------------------------------------
    # global_batch is the samples of one step (prompts x group_size); micro_batch the samples per forward.
    group_size: int = setting(64, "GRPO: samples drawn per prompt (G); each sample's advantage is its reward against "
                                  "its group's mean and std.", cli=False)
    prompt_form: str = setting("instruct", "GRPO: how prompts are asked: instruct (the chat template, code taken "
                                           "from the answer's fenced block) or base (the benchmark's raw prompt "
                                           "and stop strings), exactly as `dscoder eval` asks them.", cli=False,
                               choices=("instruct", "base"))
    prompt_shots: int = setting(3, "GRPO on mbpp-* prompts: 3 asks with the protocol's three worked examples (as "
                                   "evaluation does), 0 without them (instruct form; ~100 prompt tokens instead of "
                                   "~600, six times less to compute per sample).", cli=False, choices=None)
    stop_at_code_end: bool = setting(False, "GRPO, instruct form: end an answer where its first fenced code block "
                                            "closes (the reward reads only the code; what follows is paid for and "
                                            "not scored).", cli=False)
    temperature: float = setting(1.0, "GRPO: sampling temperature of the rollouts.", cli=False)
    top_p: float = setting(1.0, "GRPO: nucleus sampling of the rollouts.", cli=False)
    max_new_tokens: int = setting(1024, "GRPO: longest completion sampled (tokens).", cli=False)
    clip_eps: float = setting(0.2, "GRPO: the probability ratio is clipped to [1 - eps, 1 + eps].", cli=False)
    kl_coef: float = setting(0.04, "GRPO: weight beta of the k3 KL estimate to the reference policy (0: no "
                                   "reference pass at all).", cli=False)
    policy_updates: int = setting(1, "GRPO: optimizer steps on each batch of rollouts (mu); the first is on-policy, "
                                     "later ones are corrected by the clipped ratio.", cli=False)
    loss_norm: str = setting("token", "GRPO: token (every completion token of the batch weighs the same) or "
                                      "sequence (DeepSeekMath's 1/|o_i|: each sample's mean, then the batch's mean).",
                             cli=False, choices=("token", "sequence"))
    reward: str = setting("tests", "GRPO: tests (the fraction of the problem's tests the sandbox passes), model (a "
                                   "reward model from `train reward-model`, --set reward_model=DIR), or "
                                   "contains:TEXT (1 when the completion contains TEXT: a synthetic check).",
                          cli=False)
    reward_model: str | None = setting(None, "GRPO: directory of a reward model (`dscoder train reward-model`) used "
                                             "when reward=model.", "--reward-model")
    format_reward: float = setting(0.0, "GRPO: added when the answer is well formed (instruct: a fenced code block; "
                                        "base: ended by a stop string).", cli=False)
    reward_no_code: float = setting(-1.0, "GRPO: reward of an instruct answer with no fenced code block.", cli=False)
    reward_syntax_error: float = setting(-0.5, "GRPO: reward of code that does not compile (a SyntaxError, a "
                                               "build error).", cli=False)
    reward_timeout: float = setting(0.0, "GRPO: reward of code stopped by the time limit.", cli=False)
    reward_refused: float = setting(-1.0, "GRPO: reward of code whose verdict the harness refused (it left before its "
                                          "checks finished, or returned a value that is not plain data).", cli=False)
    sandbox_timeout: float = setting(10.0, "GRPO: wall-clock seconds per sandboxed test run.", cli=False)
    sandbox_workers: int = setting(0, "GRPO: programs run at once (0: one per CPU core).", cli=False, run=True)
    allow_weak_sandbox: bool = setting(False, "GRPO: run even when the sandbox is weakened (no bubblewrap, no cgroups, "
                                              "no seccomp). RL runs untrusted model code by the thousands.",
                                       "--allow-weak-sandbox", run=True)
    # --- context extension (train extend) -----------------------------------------------------------------
    rope_scaling: dict | None = setting(None, "New rope_scaling written into the model config before training "
                                              "(extension recipes set it).", cli=False)
    rope_theta: float | None = setting(None, "New RoPE base θ (None: keep the model's).", cli=False)
    max_position_embeddings: int | None = setting(None, "New context length of the model config (None: keep).",
                                                  cli=False)
    # --- how it runs (may change on --resume) --------------------------------------------------------------
    precision: str = setting("auto", "Element type training computes in (autocast): auto (bf16 where the device "
                                     "runs it fast: CUDA with bf16; else fp32), bf16 or fp32; fp16 is refused (it "
                                     "needs loss scaling, which this trainer does not do). Master weights and "
                                     "optimizer state are always fp32. (`train merge --dtype` is the saved weights' "
                                     "type, hence another name here.)", "--compute-dtype", choices=PRECISIONS,
                             run=True)
    activation_checkpointing: bool = setting(False, "Recompute each block's activations in the backward pass.",
                                             cli=False, run=True)
    compile: bool = setting(False, "torch.compile each block. For dense models: an MoE block's expert sizes change "
                                   "with the routing every step, so it recompiles until torch gives up (measured on "
                                   "the tiny V2: 107 s first step, then slower than eager).", cli=False, run=True)
    parallel: str = setting("auto", "With several processes: ddp (replicas) or fsdp (FSDP2, fully_shard per "
                                    "block); auto picks ddp.", cli=False, choices=PARALLEL, run=True)
    device: str = like(ModelChoice, "device")
    log_every: int = setting(1, "Steps between metric lines.", cli=False, run=True)
    eval_every: int = setting(100, "Steps between validations (0: only at the end).", cli=False, run=True)
    eval_rows: int = setting(64, "Validation rows evaluated each time (the same rows every time).", cli=False,
                             run=True)
    fim_eval: int = setting(32, "Held-out FIM documents whose middle is generated greedily at each validation "
                                "(0: none).", cli=False, run=True)
    save_every: int = setting(500, "Steps between checkpoints (0: only at the end).", cli=False, run=True)
    keep_last: int = setting(3, "Checkpoints kept (the oldest are deleted once a newer one is complete).",
                             cli=False, run=True)
    resume: bool = setting(False, "Continue the run in --out from its last complete checkpoint.", "--resume",
                           run=True)

    def validate(self) -> None:
        def bad(message: str) -> typing.NoReturn:
            raise TrainConfigError(message)

        for name in ("seq_len", "global_batch", "micro_batch", "steps"):
            if getattr(self, name) < 1:
                bad(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            bad(f"seq_len must be at least 2 (a row predicts its next tokens), got {self.seq_len}")
        if self.lr is None or not (self.lr > 0 and math.isfinite(self.lr)):
            bad(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            bad(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        lo, hi = self.stage_boundaries
        if not 0 < lo <= hi <= 1:
            bad(f"stage_boundaries must satisfy 0 < a <= b <= 1, got {self.stage_boundaries}")
        if not 0 <= self.warmup_max_fraction <= 1 or self.warmup_steps < 0:
            bad("warmup_steps must be >= 0 and warmup_max_fraction in [0, 1]")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "fp16":
            bad("--compute-dtype fp16: training in fp16 needs loss scaling, which this trainer does not do; use bf16 "
                "(as fast wherever a GPU has it) or fp32")
        if self.parallel not in PARALLEL:
            bad(f"parallel must be one of {', '.join(PARALLEL)}, got {self.parallel!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            bad("grad_clip and weight_decay must be >= 0")
        if self.epochs is not None and not self.epochs > 0:
            bad(f"epochs must be positive, got {self.epochs}")
        if not 0 <= self.fim_fraction < 1 or not 0 <= self.sft_val_fraction < 1:
            bad("fim_fraction and sft_val_fraction must lie in [0, 1)")
        if self.fim_fraction and not self.fim_data:
            bad("fim_fraction > 0 needs --fim-data (a corpus directory from `dscoder data build`)")
        if self.lora_rank < 0 or not 0 <= self.lora_dropout < 1:
            bad("lora_rank must be >= 0 and lora_dropout in [0, 1)")
        if self.base_quant not in ("none", "int8"):
            bad(f"base_quant must be none or int8, got {self.base_quant!r}")
        if self.base_quant != "none" and not self.lora_rank:
            bad("base_quant int8 freezes the base: it needs LoRA (--set lora_rank=16)")
        if self.group_size < 2:
            bad(f"group_size must be at least 2 (an advantage compares a sample with its group), got {self.group_size}")
        if not (self.temperature >= 0 and 0 < self.top_p <= 1 and self.max_new_tokens >= 1):
            bad("temperature must be >= 0, top_p in (0, 1] and max_new_tokens >= 1")
        if not 0 < self.clip_eps < 1 or self.kl_coef < 0 or self.policy_updates < 1:
            bad("clip_eps must lie in (0, 1), kl_coef >= 0 and policy_updates >= 1")
        if self.prompt_shots not in (0, 3):
            bad(f"prompt_shots must be 0 or 3, got {self.prompt_shots}")
        if self.loss_norm not in ("token", "sequence") or self.prompt_form not in ("instruct", "base"):
            bad(f"loss_norm must be token or sequence, prompt_form instruct or base")
        if self.reward not in ("tests", "model") and not (self.reward.startswith("contains:") and len(self.reward) > 9):
            bad(f"reward must be tests, model or contains:TEXT, got {self.reward!r}")
        if self.reward == "model" and not self.reward_model:
            bad("reward=model needs --reward-model DIR (from `dscoder train reward-model`)")
        if not self.sandbox_timeout > 0 or self.sandbox_workers < 0:
            bad("sandbox_timeout must be positive and sandbox_workers >= 0")


# ---------------------------------------------------------------------------------------------- recipes
_V1_COMMON = {"schedule": "v1-multistep", "seq_len": 4096, "warmup_steps": 2000, "min_lr_ratio": 0.1}
_V2_COMMON = {"schedule": "v2-cosine", "seq_len": 4096, "warmup_steps": 2000, "min_lr_ratio": 0.1}

RECIPES: dict[str, dict[str, Any]] = {
    # V1 paper, Table 2 (peak LR and batch in sequences of 4096 tokens).
    "v1-1.3b": {**_V1_COMMON, "lr": 5.3e-4, "global_batch": 1024},
    "v1-6.7b": {**_V1_COMMON, "lr": 4.2e-4, "global_batch": 2304},
    "v1-33b": {**_V1_COMMON, "lr": 3.5e-4, "global_batch": 3840},
    # DeepSeek-V2 paper (V2-Lite's pretraining) with Coder-V2's cosine schedule.
    "v2-lite": {**_V2_COMMON, "lr": 4.2e-4, "global_batch": 4608},
    # The README's tiny run: a few-million-parameter V2 on 2 CPU cores in about 20 minutes. Rows of
    # 1024 tokens, not fewer: a FIM document teaches infilling only where its suffix, the <fim_end>
    # marker and the start of the middle share a row (the middle continues the prefix, which
    # ends just before the suffix).
    "tiny": {"schedule": "v2-cosine", "seq_len": 1024, "global_batch": 4, "micro_batch": 2, "steps": 900,
             "lr": 3e-3, "warmup_steps": 30, "warmup_max_fraction": 0.1, "eval_every": 100, "eval_rows": 16,
             "fim_eval": 48, "save_every": 300},
    # Context extension. lr None: the final LR recorded in the starting checkpoint's train_state.pt.
    "extend-v1": {"schedule": "constant", "seq_len": 16384, "global_batch": 512, "steps": 1000, "warmup_steps": 0,
                  "lr": None, "rope_scaling": {"type": "linear", "factor": 4.0}, "rope_theta": 100000.0,
                  "max_position_embeddings": 16384},
    "extend-v2-32k": {"schedule": "constant", "seq_len": 32768, "global_batch": 1152, "steps": 1000,
                      "warmup_steps": 0, "lr": None, "max_position_embeddings": 163840,
                      "rope_scaling": {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                                       "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}},
    "extend-v2-128k": {"schedule": "constant", "seq_len": 131072, "global_batch": 288, "steps": 1000,
                       "warmup_steps": 0, "lr": None, "max_position_embeddings": 163840,
                       "rope_scaling": {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                                        "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}},
    # The tiny run's extension: 4x its context with linear scaling (V1's method at small scale).
    "extend-tiny": {"schedule": "constant", "seq_len": 4096, "global_batch": 2, "micro_batch": 1, "steps": 40,
                    "warmup_steps": 0, "lr": None, "rope_scaling": {"type": "linear", "factor": 4.0},
                    "max_position_embeddings": 4096, "eval_every": 0, "eval_rows": 8, "fim_eval": 16,
                    "save_every": 0},
}
# Supervised fine-tuning. The official script (deepseek-coder finetune/finetune_deepseekcoder.py with its
# README's command and DeepSpeed config): LR 2e-5, 10 warm-up steps, cosine to 0, 3 epochs, rows of at most
# 1024 tokens one sample each, 16 x 4 accumulation = 64 per step, HF Trainer's AdamW (beta2 0.999,
# weight decay 0, clip 1.0). V1 paper (instruction tuning): LR 1e-5, 100 warm-up steps, cosine, batches of
# 4M tokens, 2B tokens in all. Coder-V2 paper (supervised fine-tuning): LR 5e-6, 100 warm-up, cosine,
# 1M-token batches, 1B tokens.
# Packing for the papers' recipes is our choice (their batch sizes are in tokens).
_SFT_COMMON = {"schedule": "v2-cosine", "min_lr_ratio": 0.0, "warmup_max_fraction": 1.0, "fim_eval": 0,
               "beta2": 0.999, "weight_decay": 0.0}
RECIPES.update({
    "sft-official": {**_SFT_COMMON, "lr": 2e-5, "warmup_steps": 10, "epochs": 3.0, "seq_len": 1024,
                     "global_batch": 64, "micro_batch": 16, "pack": False},
    "sft-v1": {**_SFT_COMMON, "lr": 1e-5, "warmup_steps": 100, "seq_len": 4096, "global_batch": 1024,
               "steps": 500, "pack": True, "beta2": 0.95, "weight_decay": 0.1},
    "sft-v2": {**_SFT_COMMON, "lr": 5e-6, "warmup_steps": 100, "seq_len": 4096, "global_batch": 256,
               "steps": 1000, "pack": True, "beta2": 0.95, "weight_decay": 0.1},
    # This machine: LoRA on a small model, a few minutes on 2 cores.
    "sft-tiny": {**_SFT_COMMON, "lr": 1e-3, "warmup_steps": 5, "warmup_max_fraction": 0.1, "epochs": 2.0,
                 "seq_len": 512, "global_batch": 8, "micro_batch": 4, "pack": True, "lora_rank": 16,
                 "lora_alpha": 32.0, "eval_every": 0, "eval_rows": 16, "save_every": 0},
    # `dscoder finetune --repo`: LoRA on a repository's own files (next-token + FIM), on 2 CPU cores.
    "finetune-repo": {"schedule": "v2-cosine", "min_lr_ratio": 0.1, "lr": 1e-3, "warmup_steps": 10,
                      "warmup_max_fraction": 0.1, "epochs": 1.0, "seq_len": 512, "global_batch": 8,
                      "micro_batch": 4, "lora_rank": 32, "lora_alpha": 64.0, "lora_dropout": 0.0,
                      "weight_decay": 0.0, "eval_every": 0, "eval_rows": 16, "fim_eval": 0, "save_every": 100},
})
# GRPO. DeepSeekMath (arXiv 2402.03300, section 4.2) and Coder-V2 (arXiv 2406.11931, section 3.5.2): policy
# LR 1e-6, KL coefficient 0.04, 64 samples per question, max length 1024, batch 1024, one update per
# exploration stage. Our choices where they say nothing: constant LR after 10 warm-up steps, AdamW as SFT's.
_GRPO_COMMON = {"schedule": "constant", "weight_decay": 0.0, "beta2": 0.999, "fim_eval": 0, "eval_every": 0,
                "lora_dropout": 0.0, "warmup_max_fraction": 0.1}
RECIPES.update({
    "grpo-v2": {**_GRPO_COMMON, "lr": 1e-6, "kl_coef": 0.04, "group_size": 64, "max_new_tokens": 1024,
                "global_batch": 1024, "micro_batch": 8, "steps": 1000, "warmup_steps": 10, "temperature": 1.0,
                "save_every": 50},
    # This machine: LoRA on the embedded 135M model, 4 prompts x 8 samples a step, short answers.
    # MBPP asked without its worked examples and answers ended at their code block: ~6x less to compute.
    "grpo-tiny": {**_GRPO_COMMON, "lr": 1e-4, "kl_coef": 0.04, "group_size": 8, "max_new_tokens": 256,
                  "global_batch": 16, "micro_batch": 4, "steps": 40, "warmup_steps": 0, "temperature": 0.8,
                  "lora_rank": 16, "lora_alpha": 32.0, "save_every": 10, "sandbox_timeout": 5.0,
                  "prompt_shots": 0, "stop_at_code_end": True},
})
EXTEND_RECIPES = tuple(name for name in RECIPES if name.startswith("extend"))


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def parse_value(name: str, text: str) -> Any:
    """The value of `--set name=text`, converted to the field's type (JSON for dicts and tuples)."""
    import json

    types = _field_types()
    if name not in types:
        raise TrainConfigError(f"--set {name}=...: no setting named {name!r}; `dscoder train recipes` lists them")
    tp = types[name]
    is_union = typing.get_origin(tp) in (typing.Union, types_module.UnionType)
    args = set(typing.get_args(tp)) if is_union else set()
    if text.lower() in ("none", "null") and type(None) in args:
        return None
    base = next(a for a in typing.get_args(tp) if a is not type(None)) if is_union else tp
    origin = typing.get_origin(base) or base
    try:
        if origin is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes", "on")
        if origin is int:
            return int(float(text)) if "e" in text.lower() else int(text)
        if origin is float:
            return float(text)
        if origin in (dict, tuple, list):
            value = json.loads(text)
            return tuple(value) if origin is tuple else value
        return text
    except (ValueError, json.JSONDecodeError):
        raise TrainConfigError(f"--set {name}={text}: not a valid {getattr(base, '__name__', base)}") from None


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise TrainConfigError(f"--set {pair!r}: expected key=value")
        key, text = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = parse_value(key, text.strip())
    return out


def build(base: TrainConfig, recipe: str | None = None, sets: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """`base` (defaults + command-line options), then the recipe's values, then the `--set` pairs."""
    changes: dict[str, Any] = {}
    if recipe:
        if recipe not in RECIPES:
            raise TrainConfigError(f"no recipe named {recipe!r}; recipes: {', '.join(RECIPES)}")
        changes.update(RECIPES[recipe])
    given = parse_sets(sets) if isinstance(sets, list) else dict(sets or {})
    if "steps" in given and "epochs" not in given:
        given["epochs"] = None  # steps named by the user win over a recipe's epochs
    changes.update(given)
    bad = set(changes) - {f.name for f in dataclasses.fields(TrainConfig)}
    if bad:
        raise TrainConfigError(f"unknown settings: {', '.join(sorted(bad))}")
    config = dataclasses.replace(base, **changes)
    if isinstance(config.stage_boundaries, list):
        config.stage_boundaries = tuple(config.stage_boundaries)
    if config.lr is not None:
        config.validate()
    return config
