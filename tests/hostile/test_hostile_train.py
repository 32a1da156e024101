"""Hostile input to training: a run directory or corpus from elsewhere is data, never code or a path out.

- `train_state.pt` is a pickle. `--resume` on a run directory someone handed over, or `train
  extend --model CKPT` (which reads CKPT's state for its final LR), must not run what a crafted
  pickle names: states load with `weights_only=True` and a payload is refused before it runs.
- A corpus manifest names its shard files; a name with a path in it (`../../etc/passwd`) must not
  make the trainer read outside the corpus, and a shard whose size disagrees with the manifest
  (a symlink to something else, a truncated copy) is refused before training starts.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from dscoder.train import checkpoint
from dscoder.train.config import TrainConfig, build
from dscoder.train.corpus import Corpus, CorpusError
from dscoder.train.loop import Trainer
from training_data import tiny_settings


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_train_state_carrying_code_is_refused_before_it_runs(tiny_corpus, llama_dir, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(build(TrainConfig(data=str(tiny_corpus), out=str(out), model=str(llama_dir), scratch=True),
                            None, tiny_settings(steps=2)), progress=False)
    trainer.run()
    good = checkpoint.latest(out)
    marker = tmp_path / "payload-ran"
    state = checkpoint.load_state(good)
    state["settings"] = _Payload(str(marker))
    torch.save(state, good / checkpoint.STATE_FILE)
    with pytest.raises(checkpoint.CheckpointStateError, match="holds objects other than tensors and plain data"):
        Trainer(build(TrainConfig(data=str(tiny_corpus), out=str(out), model=str(llama_dir), scratch=True,
                                  resume=True), None, tiny_settings(steps=4)), progress=False)
    # extend reads the same file for the final LR of the checkpoint it starts from
    with pytest.raises(checkpoint.CheckpointStateError):
        Trainer(build(TrainConfig(data=str(tiny_corpus), out=str(tmp_path / "ext"), model=str(good)), "extend-tiny",
                      {"max_position_embeddings": 512, "seq_len": 128}), progress=False)
    assert not marker.exists(), "the pickled payload ran"


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "sub/train-00000.bin"])
def test_a_shard_name_with_a_path_is_refused(tiny_corpus, tmp_path, name):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    (tmp_path / "outside.bin").write_bytes((corpus / "train-00000.bin").read_bytes())
    manifest = json.loads((corpus / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["file"] = name
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match="lists a bad shard"):
        Corpus(corpus)


def test_a_shard_replaced_by_a_link_to_another_file_is_refused(tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    shard = corpus / "train-00000.bin"
    shard.unlink()
    shard.symlink_to("/etc/passwd")
    with pytest.raises(CorpusError, match=f"shard {shard} holds"):
        Corpus(corpus)
