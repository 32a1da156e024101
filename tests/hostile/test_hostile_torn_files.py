"""A crash leaves the old file or the new one, never a torn one (issue 17, "Files on disk").

`dscoder.files` is what every writer of lasting output goes through: `write_atomic` and
`replacing` for one file, `atomic_directory` for a whole directory (a converted model, a
checkpoint). The unit tests below make a write fail halfway, for real, and look at what is left;
the kill tests SIGKILL a real `dscoder convert` while it writes and load whatever it left.

Before this, `convert` wrote straight into OUT: a kill while it wrote the shards left a directory
with some shards and no config.json, which nothing can load (run the kill test against the old
hub.py/formats/hf.py to see it fail with "has no config.json").
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, randomize_, shared_data
from dscoder import files
from dscoder.errors import CheckpointError
from dscoder.files import atomic_directory, remove_stale, replacing, write_atomic
from dscoder.formats.hf import load_hf_dir, save_hf_dir
from dscoder.model.presets import get_preset
from dscoder.model.transformer import Transformer


# ---------------------------------------------------------------------------- one file
def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_atomic(path, "old\n")
    with pytest.raises(RuntimeError, match="disk gone"):
        with replacing(path) as tmp, open(tmp, "wb") as f:
            f.write(b"new, half of it")
            f.flush()
            assert tmp.read_bytes() == b"new, half of it"  # the half really was written, beside the target
            raise RuntimeError("disk gone")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["summary.json"]
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["summary.json"]


def test_a_library_that_writes_by_name_gets_a_temporary_name_beside_the_target(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "model.safetensors"
    with replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.safetensors.tmp-")
        save_file({"w": torch.ones(3)}, str(tmp))
        assert not path.exists()  # nothing under the real name until the block ends
    assert torch.equal(load_file(path)["w"], torch.ones(3)) and os.listdir(tmp_path) == ["model.safetensors"]


# ---------------------------------------------------------------------------- a directory
def test_a_directory_that_fails_halfway_leaves_nothing(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "model.safetensors").write_bytes(b"x" * 1000)
            assert not target.exists()
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_an_existing_directory_is_refused_before_any_work_unless_replaced(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("old")
    ran = []
    with pytest.raises(FileExistsError) as refused:
        with atomic_directory(target):
            ran.append(True)
    assert not ran and refused.value.filename == str(target)
    with atomic_directory(target, replace=True) as tmp:
        (tmp / "config.json").write_text("new")
        assert (target / "config.json").read_text() == "old"  # the old one stays whole until the new one is done
    assert (target / "config.json").read_text() == "new" and os.listdir(tmp_path) == ["ckpt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty) as tmp:  # an empty directory (mkdir -p out) is no output to protect
        (tmp / "a").write_text("a")
    assert os.listdir(empty) == ["a"]


def test_a_replacement_where_the_kernel_cannot_exchange_still_leaves_old_or_new(tmp_path, monkeypatch):
    """Where renameat2(RENAME_EXCHANGE) is missing (not Linux, some network file systems): two renames,
    and a crash between them is undone by the next writer of that target."""
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    target = tmp_path / "ckpt"
    for text in ("old", "new"):
        with atomic_directory(target, replace=True) as tmp:
            (tmp / "config.json").write_text(text)
    assert (target / "config.json").read_text() == "new" and os.listdir(tmp_path) == ["ckpt"]
    # A writer killed between its two renames: the old directory is aside, under the dead writer's PID.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / f".ckpt.old-{int(dead.stdout)}-0123abcd"
    target.rename(aside)
    assert remove_stale(tmp_path, "ckpt") == [aside]
    assert (target / "config.json").read_text() == "new" and os.listdir(tmp_path) == ["ckpt"]


_KILLED_WRITER = """
import sys, time
from dscoder.files import atomic_directory
with atomic_directory(sys.argv[1]) as tmp:
    (tmp / "model-00001-of-00002.safetensors").write_bytes(b"x" * 100_000)
    print("writing", flush=True)
    time.sleep(600)
"""


def test_the_leftovers_of_a_killed_writer_are_removed_by_the_next_one(tmp_path):
    target = tmp_path / "ckpt"
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL  # killed mid-write, not finished
    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(f".ckpt.tmp-{writer.pid}-") and not target.exists()
    live = Path(tmp_path / f".ckpt.tmp-{os.getpid()}-0123abcd")
    live.mkdir()  # a writer that is still running (this process) keeps its temporary
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt", live.name])


def test_convert_refuses_an_existing_output_and_replaces_it_only_when_forced(tmp_path):
    from dscoder.hub import convert

    source = save_hf_dir(randomize_(Transformer(get_preset("tiny-llama").config), seed=3), tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists: pass --force"):
        convert(source, out, "fp32")
    assert os.listdir(out) == ["notes.txt"]
    convert(source, out, "fp32", force=True)
    assert "notes.txt" not in os.listdir(out) and (out / "config.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]


# ---------------------------------------------------------------------------- SIGKILL during convert
KILLS = 8


def _convert(source: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "dscoder.cli.app", "convert", str(source), str(out),
                                 "--dtype", "fp32", "--max-shard-gb", "0.01", *extra],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def _paths(parent: Path) -> set[str]:
    """Everything in `parent` and one level down: the output, temporaries, the files being written."""
    found = set()
    with os.scandir(parent) as top:
        for entry in top:
            found.add(entry.name)
            try:
                with os.scandir(entry.path) as inner:
                    found.update(f"{entry.name}/{e.name}" for e in inner)
            except (NotADirectoryError, FileNotFoundError):
                pass
    return found


def _watch(proc: subprocess.Popen, parent: Path, *, kill_at: float | None = None,
           kill_after_write: float | None = None) -> dict:
    """Poll `parent` while `proc` runs; SIGKILL it `kill_at` seconds after it started, or
    `kill_after_write` seconds after the first file appears inside a directory there (weights being
    written). Returns when the process ended: start/first-file/last-change/exit times, and whether our
    SIGKILL is what ended it (it was still running when the signal was sent)."""
    start = time.monotonic()
    seen = before = _paths(parent)
    first_file = last_change = killed_at = None
    while True:
        now = time.monotonic() - start
        try:
            paths = _paths(parent)
        except FileNotFoundError:
            paths = set()
        if paths - seen:
            last_change = now
            if first_file is None and any("/" in p for p in paths - before):
                first_file = now
        seen |= paths
        due = (kill_at is not None and now >= kill_at) or \
              (kill_after_write is not None and first_file is not None and now >= first_file + kill_after_write)
        if due and killed_at is None:
            if proc.poll() is not None:
                break  # it ended first: the caller sees that the kill did not happen
            proc.send_signal(signal.SIGKILL)
            killed_at = now
        if proc.poll() is not None:
            break
        time.sleep(0.0005)
    return {"first_file": first_file, "last_change": last_change, "exit": time.monotonic() - start,
            "killed_at": killed_at, "returncode": proc.wait()}


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    return load_hf_dir(directory).state_dict()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A random model over DeepSeek-Coder's 32k vocabulary, tokenizer included: 78 MB of fp32 weights,
    so the writing lasts long enough (about half a second) for kills to land inside it."""
    from dscoder.tokenizer.tokenizer import Tokenizer

    tok = Tokenizer.load(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id, hidden_size=256, intermediate_size=640,
                                                  num_hidden_layers=4)
    directory = save_hf_dir(randomize_(Transformer(cfg), seed=17, std=0.02), tmp_path_factory.mktemp("src") / "m",
                            dtype=torch.float32)
    tok.save(directory)
    return directory


@pytest.mark.slow
def test_sigkill_during_convert_leaves_no_output_or_a_complete_one(source, tmp_path):
    """8 SIGKILLs at seeded moments: 2 anywhere in the run, 6 in the writing (timed from the first file
    written, over the writing time of an uninterrupted run and a fifth more). After each: no OUT,
    or an OUT with every file of an uninterrupted conversion and identical tensors. Then an
    uninterrupted run into the same place cleans up what the killed ones left."""
    logs = tmp_path / "logs"
    logs.mkdir()
    reference_parent = tmp_path / "reference"
    reference_parent.mkdir()
    timeline = _watch(_convert(source, reference_parent / "out", logs / "reference.log"), reference_parent)
    assert timeline["returncode"] == 0, (logs / "reference.log").read_text()
    reference = reference_parent / "out"
    expected_files = sorted(os.listdir(reference))
    expected = _tensors(reference)
    writing = timeline["last_change"] - timeline["first_file"]
    assert writing > 0, timeline

    rng = random.Random(17)
    parent = tmp_path / "kills"
    parent.mkdir()
    outcomes = []
    for i in range(KILLS):
        moment = (dict(kill_at=rng.uniform(0.05, 0.95) * timeline["first_file"]) if i < 2
                  else dict(kill_after_write=rng.uniform(0.0, 1.2) * writing))
        run = _watch(_convert(source, parent / "out", logs / f"kill-{i}.log"), parent, **moment)
        log = (logs / f"kill-{i}.log").read_text()
        assert run["killed_at"] is not None and run["returncode"] == -signal.SIGKILL, \
            f"kill {i} ({moment}) did not land while convert ran: {run}\n{log}"
        out = parent / "out"
        if not out.exists():
            half_built = [p for p in _paths(parent) if p.startswith(".out.tmp-") and "/" in p]
            outcomes.append("half-built" if half_built else "absent")
            continue
        assert sorted(os.listdir(out)) == expected_files, f"kill {i} ({moment}, {run}) left a torn {out}"
        try:
            got = _tensors(out)
        except CheckpointError as e:
            pytest.fail(f"kill {i} ({moment}, {run}) left {out} that does not load: {e}")
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
        outcomes.append("complete")
        shutil.rmtree(out)
    print("outcomes:", outcomes)
    # Proof that kills landed while the model was being written: files written, no OUT yet.
    assert "half-built" in outcomes, outcomes

    final = _watch(_convert(source, parent / "out", logs / "final.log"), parent)
    assert final["returncode"] == 0, (logs / "final.log").read_text()
    assert os.listdir(parent) == ["out"], "the next convert removes what the killed ones left"
    got = _tensors(parent / "out")
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.slow
def test_sigkill_during_convert_force_leaves_the_old_output_or_the_new(source, tmp_path):
    """Replacing an existing OUT (bf16) by an fp32 conversion, killed while writing: OUT is always
    whole, either the old bf16 model or the new fp32 one."""
    logs = tmp_path / "logs"
    logs.mkdir()
    parent = tmp_path / "kills"
    parent.mkdir()
    out = parent / "out"
    old = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "convert", str(source), str(out), "--dtype", "bf16"],
                         cwd=ROOT, capture_output=True, text=True)
    assert old.returncode == 0, old.stderr
    old_tensors = _tensors(out)
    new_tensors = _tensors(source)
    (tmp_path / "reference").mkdir()
    timeline = _watch(_convert(source, tmp_path / "reference" / "out", logs / "reference.log"), tmp_path / "reference")
    assert timeline["returncode"] == 0, (logs / "reference.log").read_text()
    writing = timeline["last_change"] - timeline["first_file"]
    rng = random.Random(23)
    seen = set()
    for i in range(4):
        run = _watch(_convert(source, out, logs / f"kill-{i}.log", "--force"), parent,
                     kill_after_write=rng.uniform(0.0, 1.2) * writing)
        assert run["killed_at"] is not None and run["returncode"] == -signal.SIGKILL, \
            f"kill {i} did not land while convert ran: {run}\n{(logs / f'kill-{i}.log').read_text()}"
        got = _tensors(out)
        if all(torch.equal(got[k], old_tensors[k]) for k in old_tensors):
            seen.add("old")
        else:
            assert all(torch.equal(got[k], new_tensors[k]) for k in new_tensors), f"kill {i}: OUT is neither"
            seen.add("new")
            shutil.rmtree(out)  # back to the old one for the next kill
            subprocess.run([sys.executable, "-m", "dscoder.cli.app", "convert", str(source), str(out),
                            "--dtype", "bf16"], cwd=ROOT, capture_output=True, check=True)
    assert "old" in seen, "no kill landed before the swap"
