"""Checkpoints a person can serve and a run can resume: an HF directory plus `train_state.pt`.

`RUN/checkpoints/step-0000500/` holds:

- the model as a Hugging Face directory (`config.json`, `model.safetensors`, the tokenizer), in
  fp32, the master weights themselves: `dscoder complete`, transformers and vLLM load it as is,
  and resuming from it is exact;
- `train_state.pt`: the step, the optimizer's state, the data stream's position, the RNG state
  of python, numpy and torch (CPU and CUDA) of every rank, the LR of the last step and the run's
  settings.

A checkpoint is built in a temporary directory and renamed into place when complete
(`dscoder.files.atomic_directory`), so a kill at any moment leaves the previous checkpoints
valid and no half-written one under a real name; `latest` is the highest complete step. Only
then are checkpoints beyond the last `keep_last` deleted.

With several processes every rank takes part in gathering the full state dicts
(`torch.distributed.checkpoint.state_dict`, which knows DDP and FSDP2), and rank 0 writes.
The full gather costs rank 0 one copy of the model and optimizer in CPU memory; beyond a
few billion parameters a sharded `torch.distributed.checkpoint` save is the better fit (not
built: no such model trains on the machines this project targets yet).
"""

from __future__ import annotations

import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

from dscoder.errors import UserError
from dscoder.files import atomic_directory
from dscoder.formats.hf import save_hf_state
from dscoder.model.config import ModelConfig
from dscoder.train import distributed

STATE_FILE = "train_state.pt"
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA run's checkpoint holds its adapter instead of the model
_STEP_DIR = re.compile(r"^step-(\d{7})$")


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:07d}"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint of a run, oldest first."""
    found = []
    root = run_dir / "checkpoints"
    if root.is_dir():
        for child in root.iterdir():
            m = _STEP_DIR.match(child.name)
            weights = (child / "config.json").is_file() or (child / ADAPTER_CONFIG).is_file()
            if m and (child / STATE_FILE).is_file() and weights:
                found.append((int(m.group(1)), child))
    return sorted(found)


def latest(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict:
    """Every library's RNG state as plain containers and tensors (numpy's key array as a tensor), so
    that `train_state.pt` loads with `weights_only=True`: no pickled object of any class."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_adapter(directory: Path) -> bool:
    return (directory / ADAPTER_CONFIG).is_file()


def save(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: ModelConfig,
         tokenizer, state: dict, keep_last: int, is_main: bool, write_adapter=None) -> Path:
    """Write checkpoint `step` (all ranks call this; rank 0 writes). `state` holds the loop's own
    entries (stream position, LR, settings); the optimizer and RNG states are added here.
    `write_adapter(directory)`: a LoRA run writes its adapter there instead of the whole model."""
    weights = None if write_adapter else get_model_state_dict(model, options=_FULL)
    optim = get_optimizer_state_dict(model, optimizer, options=_FULL)
    rngs = distributed.gather_objects(rng_state())
    target = step_dir(run_dir, step)
    if is_main:
        with atomic_directory(target, replace=True) as tmp:
            if write_adapter:
                write_adapter(tmp)
            else:
                save_hf_state(config, weights, tmp, torch.float32)
            if tokenizer is not None:
                tokenizer.save(tmp)
            torch.save({**state, "step": step, "optimizer": optim, "rng": rngs}, tmp / STATE_FILE)
        for old_step, old in complete_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            if old_step != step:
                shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return target


class CheckpointStateError(UserError):
    """A train_state.pt that cannot be read safely (not ours, damaged, or carrying code)."""


def load_state(directory: Path) -> dict:
    """Read `train_state.pt` with `weights_only=True`: a run directory may come from anywhere, and
    a full unpickle would run whatever code a crafted file names. Ours holds only tensors and
    plain containers (`rng_state` sees to numpy's), so nothing legitimate is refused."""
    path = directory / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointStateError(f"{path} cannot be read as a training state (it is damaged, not written by "
                                   f"dscoder, or holds objects other than tensors and plain data): {first}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointStateError(f"{path} is not a dscoder training state (no step)")
    return state


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, rank: int) -> None:
    """Put the optimizer state and this rank's RNG state back (the weights were loaded with the model)."""
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    rngs = state.get("rng") or []
    if rank < len(rngs):
        set_rng_state(rngs[rank])

