"""The data mixture option: which corpora a run trains on and in what proportions.

A mixture is written `name=weight,...` (`code=0.6,math=0.1,text=0.3`) or named by a preset
(`v1`, `v2`); weights are normalised to sum to 1. Corpora are given as `name=PATH` (a single
corpus may be a bare PATH, named `corpus`). `RowStream` (corpus.py) draws each row's corpus by
these weights; `check_drawn` compares what it really drew with them, for the log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import UserError

# DeepSeek-Coder (V1), Guo et al. 2024, arXiv:2401.14196, section 2: the pretraining data is
# 87% source code, 10% English code-related natural language (GitHub Markdown and StackExchange)
# and 3% code-unrelated Chinese natural language (articles, for the model's Chinese).
V1_MIX = {"code": 0.87, "code_text": 0.10, "zh_text": 0.03}
# DeepSeek-Coder-V2, DeepSeek-AI 2024, arXiv:2406.11931, section 2: continued pretraining on
# 60% source code, 10% math corpus and 30% natural language.
V2_MIX = {"code": 0.6, "math": 0.1, "text": 0.3}
PRESETS = {"v1": V1_MIX, "v2": V2_MIX}

SINGLE = "corpus"  # the name of a corpus given as a bare path
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class MixtureError(UserError):
    """A mixture or corpus list cannot be read, or its names do not match each other."""


def parse_mix(spec: str) -> dict[str, float]:
    """`"code=0.6,math=0.1,text=0.3"` (or a preset name, `v1`/`v2`) -> weights summing to 1,
    in the order written."""
    text = spec.strip()
    if text.lower() in PRESETS:
        return _normalised(PRESETS[text.lower()], spec)
    if not text:
        raise MixtureError(f"empty mixture; write name=weight,... (e.g. code=0.6,math=0.1,text=0.3) "
                           f"or a preset: {', '.join(PRESETS)}")
    weights: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq:
            raise MixtureError(f"mixture {spec!r}: {item!r} is not name=weight"
                               f"{'' if item else ' (an empty item: a stray comma?)'}")
        if not _NAME.fullmatch(name):
            raise MixtureError(f"mixture {spec!r}: {name!r} is not a corpus name (letters, digits, _ . -)")
        try:
            weight = float(value)
        except ValueError:
            raise MixtureError(f"mixture {spec!r}: the weight of {name}, {value!r}, is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise MixtureError(f"mixture {spec!r}: the weight of {name} is {value}; weights are finite and >= 0")
        if name in weights:
            raise MixtureError(f"mixture {spec!r} names {name} twice")
        weights[name] = weight
    return _normalised(weights, spec)


def _normalised(weights: Mapping[str, float], spec: str) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        raise MixtureError(f"mixture {spec!r}: every weight is zero")
    return {name: w / total for name, w in weights.items()}


def parse_sources(items: Sequence[str] | Mapping[str, str | Path]) -> dict[str, Path]:
    """`["code=/data/code", "math=/data/math"]` (or a mapping) -> name -> corpus directory.
    A single bare path is named `corpus`."""
    if isinstance(items, Mapping):
        pairs = [(str(n), Path(p)) for n, p in items.items()]
    else:
        pairs = []
        for item in items:
            name, eq, path = item.partition("=")
            if eq and _NAME.fullmatch(name.strip()) and path.strip():
                pairs.append((name.strip(), Path(path.strip())))
            elif len(items) == 1 and item.strip():
                pairs.append((SINGLE, Path(item.strip())))
            else:
                raise MixtureError(f"corpus {item!r} is not name=PATH (with several corpora each needs a name, "
                                   "the one the mixture weighs it by)")
    sources: dict[str, Path] = {}
    for name, path in pairs:
        if not _NAME.fullmatch(name):
            raise MixtureError(f"{name!r} is not a corpus name (letters, digits, _ . -)")
        if name in sources:
            raise MixtureError(f"corpus name {name} is given twice ({sources[name]} and {path})")
        sources[name] = path
    if not sources:
        raise MixtureError("no corpus given; name one as PATH or name=PATH")
    return sources


def resolve_sources(mix: str | None, corpora: Sequence[str] | Mapping[str, str | Path]
                    ) -> tuple[dict[str, Path], dict[str, float] | None]:
    """The corpora and the mixture of one run, checked against each other: every weighted name
    has a corpus and every corpus a weight. Without a mixture the weights are None (RowStream
    then weighs the corpora by their size, as if concatenated)."""
    sources = parse_sources(corpora)
    if mix is None or not mix.strip():
        return sources, None
    weights = parse_mix(mix)
    unweighted = [n for n in sources if n not in weights]
    missing = [n for n in weights if n not in sources]
    if missing or unweighted:
        problems = []
        if missing:
            problems.append(f"the mixture weighs {', '.join(missing)} but no corpus is given as "
                            f"{', '.join(f'{n}=PATH' for n in missing)}")
        if unweighted:
            problems.append(f"corpus {', '.join(unweighted)} has no weight in the mixture {mix!r}")
        raise MixtureError("; ".join(problems))
    return sources, weights


@dataclass(frozen=True)
class MixCheck:
    """One corpus's share of the rows drawn, against its weight."""

    expected: float  # the normalised weight
    actual: float  # the fraction of rows drawn from it (0 when nothing has been drawn)
    rows: int  # rows drawn from it
    sigmas: float  # |actual - expected| in binomial standard deviations (0 when exact, inf when impossible)
    ok: bool  # within the tolerance


def check_drawn(drawn: Mapping[str, int], weights: Mapping[str, float], tolerance: float = 4.0
                ) -> dict[str, MixCheck]:
    """Per corpus, the drawn fraction against the weight. Each row's corpus is an independent
    draw, so a corpus of weight p has a drawn fraction of standard deviation sqrt(p(1-p)/n)
    after n rows; `ok` is whether it lies within `tolerance` of those."""
    if set(drawn) != set(weights):
        raise MixtureError(f"rows drawn from {', '.join(sorted(drawn))} but weights for {', '.join(sorted(weights))}")
    total_weight = sum(weights.values())
    n = sum(drawn.values())
    checks = {}
    for name, w in weights.items():
        p = w / total_weight
        actual = drawn[name] / n if n else 0.0
        sd = math.sqrt(p * (1 - p) / n) if n else 0.0
        gap = abs(actual - p) if n else 0.0
        sigmas = gap / sd if sd > 0 else (0.0 if gap < 1e-12 else math.inf)
        checks[name] = MixCheck(expected=p, actual=actual, rows=drawn[name], sigmas=sigmas, ok=sigmas <= tolerance)
    return checks
