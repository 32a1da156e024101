"""`dscoder finetune --repo PATH`: one command from a repository to a model that knows it.

The stages, each leaving a file a person can look at in `--out`:

1. read the repository the way `data build` reads one (no link followed, nothing outside the
   root opened) and keep its source files; hold out whole files by a seeded hash of their path
   (`repo_eval.split_files`), so no window of a held-out file leaks into training
   (`split.json`);
2. the base model as an HF directory (`base/`): the starting weights in fp32 and the tokenizer,
   grown by DeepSeek-Coder's three FIM tokens with `--add-fim-tokens` (`train/vocab.py`);
3. `data build` on the training files alone (`corpus/repo`: one repository-level document,
   dependency-ordered, left to right; `corpus/files`, when the tokenizer has FIM tokens: each file
   its own document, FIM at `--fim-rate`), read together in proportion to their sizes;
4. the held-out measurements before training, on the model as given (`before.json`): perplexity,
   next-line exact match at seeded cut points, FIM middle-line exact match (prefix-only when the
   model has no FIM tokens);
5. LoRA training on the loop of `dscoder train` (`run/`: checkpoints are peft adapters, metrics,
   curves), the new FIM rows trained beside the adapters;
6. the adapter merged into a full checkpoint (`merged/`, loadable by transformers, servable by
   `dscoder serve --model`), unless `--no-merge`; the adapter stays in the last checkpoint;
7. the same measurements after (`after.json`), a table on the terminal, `finetune.json` and a
   PNG (`finetune.png`: the training curve beside the before/after bars).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dscoder import hub
from dscoder.repo.ingest import Tree, discover
from dscoder.repo.langid import identify
from dscoder.data.pipeline import BuildConfig, build
from dscoder.errors import UserError
from dscoder.files import write_atomic
from dscoder.formats.hf import save_hf_dir
from dscoder.model.lora import merge_lora
from dscoder.settings import MISSING, setting
from dscoder.tokenizer.fim import FimUnsupportedError, fim_tokens
from dscoder.train import adapt, checkpoint, repo_eval
from dscoder.train.config import TrainConfig, build as build_train_config
from dscoder.train.loop import train
from dscoder.train.vocab import add_fim_tokens


class FinetuneError(UserError):
    """The repository cannot be fine-tuned on (no source files, too few to hold any out...)."""


@dataclass
class FinetuneConfig:
    """Settings of `dscoder finetune` (the training hyper-parameters come from --recipe and --set)."""

    repo: str = setting(MISSING, "The repository to learn: a directory or git work tree.", "--repo")
    out: str = setting(MISSING, "Output directory: split.json, base/, corpus/, run/, merged/, before/after.json, "
                                "finetune.json, finetune.png.", "--out", "-o")
    model: str | None = setting(None, "Model to fine-tune: HF directory, .gguf, preset or HF repo id (default: the "
                                      "embedded model).", "--model", "-m")
    add_fim_tokens: bool = setting(False, "Add DeepSeek-Coder's three FIM tokens to a model that has none, and train "
                                          "infilling into it (new rows start as the mean embedding).",
                                   "--add-fim-tokens")
    held_out_fraction: float = setting(0.1, "Share of the files held out (whole files, by a seeded hash of the "
                                            "path).", "--held-out")
    seed: int = setting(0, "Seeds the split, the evaluation cases and training.", "--seed")
    next_line_cases: int = setting(100, "Next-line exact-match cases drawn from the held-out files.",
                                   "--next-line-cases")
    fim_cases: int = setting(100, "FIM middle-line exact-match cases drawn from the held-out files.", "--fim-cases")
    eval_context: int = setting(384, "Tokens of context an evaluation case keeps (left context, or prefix + "
                                     "suffix).", "--eval-context")
    fim_rate: float = setting(0.5, "Share of training documents written as FIM (when the model has FIM tokens).",
                              "--fim-rate")
    merge: bool = setting(True, "Write merged/, a full checkpoint with the adapter folded in (--no-merge: only the "
                                "adapter, in run/checkpoints/).", "--no-merge")
    resume: bool = setting(False, "Continue an interrupted fine-tuning in --out.", "--resume", run=True)


def read_sources(repo: str, max_files: int = 20_000) -> dict[str, str]:
    """Relative path -> text of the repository's source files (a language `langid` names)."""
    repos = discover([repo])
    if not repos:
        raise FinetuneError(f"{repo} holds no repository")
    files: dict[str, str] = {}
    with Tree(repos[0].root) as tree:
        for rel in repos[0].files:
            if identify(rel) is None or len(files) >= max_files:
                continue
            read = tree.read(rel)
            if read.text is not None and read.text.strip():
                files[rel] = read.text
    if len(files) < 2:
        raise FinetuneError(f"{repo} has {len(files)} source file(s); fine-tuning needs at least two (one is held "
                            "out to measure what was learned)")
    return files


def _write_sources(files: dict[str, str], paths: list[str], root: Path, clear: bool = True) -> None:
    if clear and root.exists():
        shutil.rmtree(root)
    for rel in paths:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files[rel], encoding="utf-8")


def _build_corpora(out: Path, files: dict[str, str], train_paths: list[str], name: str, tokenizer: str, seq_len: int,
                   fim_rate: float, seed: int) -> dict[str, Path]:
    """The training corpora: `repo`, the training files as one repository-level document (dependency
    order, `#path` headers, left to right), and, when the tokenizer has FIM tokens, `files`, each
    file its own document with FIM at `fim_rate`. `data build` rewrites a *document* for FIM, and
    a repository is one document: with the repository alone, a whole fine-tuning would hold one
    FIM example at most, far too few to learn infilling from."""
    plan = {"repo": (out / "work" / "source-repo", 0.0)}
    if fim_rate > 0:
        plan["files"] = (out / "work" / "source-files", fim_rate)
    built = {}
    for kind, (source, rate) in plan.items():
        corpus = out / "corpus" / kind
        if not (corpus / "manifest.json").is_file():
            if kind == "repo":
                _write_sources(files, train_paths, source / name)
            else:
                if source.exists():
                    shutil.rmtree(source)
                for i, rel in enumerate(train_paths):
                    _write_sources(files, [rel], source / f"{i:05d}", clear=False)
            build(BuildConfig(sources=[str(source)], out=str(corpus), tokenizer=tokenizer, split=True, seq_len=seq_len,
                              fim_rate=rate, val_fraction=0.0, seed=seed, decontaminate=False, workers=1),
                  progress=None)
        built[kind] = corpus
    return built


def _has_fim(tokenizer) -> bool:
    try:
        fim_tokens(tokenizer)
        return True
    except FimUnsupportedError:
        return False


def _measure(path: Path, net, tokenizer, files, cases, seq_len, progress) -> dict:
    """The held-out measurements, cached in `path` so a resumed fine-tuning does not repeat them."""
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    result = repo_eval.evaluate_repo(net, tokenizer, files, cases, seq_len, progress=progress)
    result["seconds"] = time.perf_counter() - started
    write_atomic(path, json.dumps(result, indent=1))
    return result


def finetune(fc: FinetuneConfig, recipe: str | None = "finetune-repo", sets: list[str] | None = None,
             progress: bool = True, say=print) -> dict:
    """Run the stages of the module docstring; returns what `finetune.json` holds."""
    out = Path(fc.out)
    if out.exists() and any(out.iterdir()) and not fc.resume:
        raise FinetuneError(f"{out} is not empty; pass --resume to continue the fine-tuning there, or choose another "
                            "--out")
    started = time.perf_counter()
    # everything that can refuse the job does so before anything is written
    files = read_sources(fc.repo)
    train_paths, held_paths = repo_eval.split_files(files, fc.held_out_fraction, fc.seed)
    net, tokenizer = hub.load(fc.model)
    trainable: tuple[int, ...] = ()
    if fc.add_fim_tokens:
        grown, grown_tokenizer, trainable = add_fim_tokens(net, tokenizer)
        say(f"added FIM tokens {trainable}; vocabulary {net.config.vocab_size} -> {grown.config.vocab_size}")
    else:
        grown, grown_tokenizer = net, tokenizer
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "split.json", json.dumps({"repo": str(Path(fc.repo).resolve()), "seed": fc.seed,
                                                 "train": train_paths, "held_out": held_paths}, indent=1))
    held = {p: files[p] for p in held_paths}
    say(f"{len(files)} source files: {len(train_paths)} to train on, {len(held_paths)} held out")
    base_dir = out / "base"
    if not (base_dir / "config.json").is_file():
        save_hf_dir(grown, base_dir)
        grown_tokenizer.save(base_dir)
    tcfg = build_train_config(TrainConfig(data="", out=str(out / "run"), model=str(base_dir),
                                          resume=fc.resume, seed=fc.seed), recipe, sets or [])
    if trainable:
        tcfg = build_train_config(tcfg, None, {"trainable_tokens": tuple(trainable)})
    if not tcfg.lora_rank:
        raise FinetuneError("finetune trains LoRA adapters: keep lora_rank > 0 (full fine-tuning: dscoder train)")

    corpora = _build_corpora(out, files, train_paths, Path(fc.repo).resolve().name, str(base_dir), tcfg.seq_len,
                             fc.fim_rate if _has_fim(grown_tokenizer) else 0.0, fc.seed)
    tcfg = build_train_config(tcfg, None, {"data": ",".join(f"{k}={v}" for k, v in corpora.items())})
    cases = repo_eval.draw_cases(held, fc.next_line_cases, fc.fim_cases, fc.seed, grown_tokenizer, fc.eval_context)
    write_atomic(out / "cases.json", cases.to_json())

    say("measuring the model as given on the held-out files")
    before = _measure(out / "before.json", net, tokenizer, held, cases, tcfg.seq_len, progress)
    del net, grown

    say(f"training LoRA r={tcfg.lora_rank} on {', '.join(map(str, corpora.values()))}")
    result = train(tcfg, progress=progress)
    last = checkpoint.latest(out / "run")
    tuned = adapt.restore(hub.load_model(base_dir), tcfg, last)
    merge_lora(tuned)
    if fc.merge:
        save_hf_dir(tuned, out / "merged")
        grown_tokenizer.save(out / "merged")

    say("measuring the fine-tuned model on the held-out files")
    after_path = out / "after.json"
    after_path.unlink(missing_ok=True)
    after = _measure(after_path, tuned, grown_tokenizer, held, cases, tcfg.seq_len, progress)
    summary = {"repo": str(Path(fc.repo).resolve()), "model": fc.model or "embedded", "files": len(files),
               "corpora": {k: str(v) for k, v in corpora.items()},
               "train_files": len(train_paths), "held_out_files": len(held_paths), "added_fim_tokens": list(trainable),
               "steps": result.step, "adapter": str(last), "merged": str(out / "merged") if fc.merge else None,
               "before": before, "after": after, "minutes": (time.perf_counter() - started) / 60,
               "train_settings": {k: v for k, v in vars(tcfg).items() if isinstance(v, (int, float, str, tuple))}}
    write_atomic(out / "finetune.json", json.dumps(summary, indent=1, default=list))
    from dscoder.train.plot import plot_finetune, plot_run

    plot_run(out / "run")
    summary["png"] = str(plot_finetune(out))
    say(repo_eval.format_comparison(before, after))
    return summary
