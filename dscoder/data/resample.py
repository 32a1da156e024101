"""Per-language up- and down-sampling of training documents: `--language-weights Python=2,HTML=0.5`.

The trainer reads rows packed across documents, so a row has no single language and the
sampling has to happen where documents still exist: when the build packs them. A document's
language is the one most of its tokens are in (a repository document mixes its files' languages).
A factor f repeats a document floor(f) times plus once more with probability frac(f) (so 0.3
keeps it 30% of the time and 2.5 writes it twice or three times), the draw seeded by the build
seed and the document's name: the shards stay byte-identical for any number of workers.
Validation documents are never resampled (the held-out loss measures the model, not the mix).
"""

from __future__ import annotations

import math
import random

from dscoder.repo.langid import LANGUAGES
from dscoder.errors import UserError


def parse_language_weights(spec: str | None) -> dict[str, float]:
    """'Python=2,HTML=0.5' -> {'Python': 2.0, 'HTML': 0.5}; names are langid's (case as written there)."""
    if not spec or not spec.strip():
        return {}
    known = {name.lower(): name for name in LANGUAGES}
    out: dict[str, float] = {}
    for item in spec.split(","):
        name, eq, value = item.rpartition("=")
        name = name.strip()
        if not eq or not name:
            raise UserError(f"--language-weights: {item.strip()!r} is not LANGUAGE=FACTOR")
        canonical = known.get(name.lower())
        if canonical is None:
            raise UserError(f"--language-weights: {name!r} is not a language dscoder identifies "
                            "(names as in GitHub Linguist: Python, C++, Jupyter Notebook, ...)")
        try:
            factor = float(value)
        except ValueError:
            raise UserError(f"--language-weights: the factor of {name} is {value.strip()!r}, not a number") from None
        if not (math.isfinite(factor) and factor >= 0):
            raise UserError(f"--language-weights: the factor of {name} must be a finite number >= 0, got {factor}")
        if canonical in out:
            raise UserError(f"--language-weights names {canonical} twice")
        out[canonical] = factor
    return out


def main_language(per_language_tokens: dict[str, int]) -> str | None:
    """The language most of a document's tokens are in (ties: the name first in sort order)."""
    if not per_language_tokens:
        return None
    return min(per_language_tokens, key=lambda name: (-per_language_tokens[name], name))


def copies(document: str, language: str | None, factors: dict[str, float], seed: int) -> int:
    """How many times a training document is written: 1 unless its language has a factor."""
    factor = factors.get(language, 1.0) if language is not None else 1.0
    whole = math.floor(factor)
    extra = factor - whole
    if extra and random.Random(f"{seed}/resample/{document}").random() < extra:
        whole += 1
    return whole
