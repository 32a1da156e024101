"""Pass-key retrieval: can the model find one line in a long stretch of filler text?

The probe of Landmark Attention (Mohtashami & Jaggi 2023) and the "needle in a haystack" tests
that context-extension work reports: a five-digit key, "The pass key is NNNNN. Remember it.",
is hidden at some depth in repeated filler sentences, and at the end the model is asked for it.
It shows whether a model really attends across its whole context (after a RoPE extension, say)
where perplexity alone can hide it. Synthetic and seeded, so no data file is needed.

One subset per context length ("1k" ... "128k"; several at once: `--subset 1k,2k,4k`, the
default), each with the key at five depths (0%, 25%, 50%, 75%, 100% of the filler) and four
keys per depth: 20 problems per length, grouped by length so the report's chart shows accuracy
against length.

Lengths are approximate and in characters, not tokens: problems are built before any model is
chosen, so no tokenizer measures them. The filler is plain English, about 4 characters per
token in the BPE vocabularies of DeepSeek-Coder and Llama-family models, so "4k" is ~16,000
characters (`extra["approx_tokens"]` and `extra["chars"]` say what each problem holds; measured,
the 1k and 4k prompts are 998 and 3,940 tokens for DeepSeek-Coder's tokenizer, 964 and 3,805 for
SmolLM2's, so a "16k" prompt fits a 16K context with room for the answer). A length none of
whose prompts fits a local model's context is skipped by name (`eval/evaluate.py`), never scored
0%; a prompt that fits but leaves no room for the answer (or, through --api, one the server
refuses) is that sample's generation error (status "error", stage "generate"), not passed.

Both forms: the base form ends with "The pass key is" for the model to continue (stopped at the
end of the line); the instruct form asks for the number in a chat message. The judge reads the
first number in the answer and compares it with the key, as text (nothing is run).
"""

from __future__ import annotations

import random
import re
from functools import partial
from pathlib import Path

from dscoder.errors import UserError
from dscoder.tasks.problem import Problem

LENGTHS = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768, "64k": 65536,
           "128k": 131072}
CHARS_PER_TOKEN = 4  # of the filler, roughly, in the usual BPE vocabularies
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
KEYS_PER_DEPTH = 4

INTRO = ("Somewhere in the long text below there is a pass key. Find it and remember it: "
         "you will be asked for it at the end.\n\n")
# Our own filler: plain sentences that say nothing, repeated.
FILLER = ("The hills are quiet today. A cart rolls down the road. The baker opens the shop. "
          "Rain falls on the roof and stops again. ")
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\n\nWhat is the pass key? The pass key is"
ASK = "\n\nWhat is the pass key? Answer with the number only."


def haystack(length: str, depth: float, key: int) -> str:
    """The intro, filler to ~`length` tokens in all with the key line at `depth` of it (at a sentence
    boundary), without the closing question."""
    budget = LENGTHS[length] * CHARS_PER_TOKEN - len(INTRO) - len(QUESTION) - len(NEEDLE.format(key=key))
    filler = (FILLER * (budget // len(FILLER) + 1))[:max(budget, 0)]
    filler = filler[:filler.rfind(". ") + 2] if ". " in filler else ""  # end on a whole sentence
    cut = round(depth * len(filler))
    boundary = filler.rfind(". ", 0, cut + 1)
    at = 0 if cut == 0 or boundary < 0 else boundary + 2
    return INTRO + filler[:at] + NEEDLE.format(key=key) + filler[at:]


def judge(key: int, answer: str) -> bool:
    """The first number (run of digits) in the answer is the key."""
    found = re.search(r"\d+", answer[:10_000])
    return found is not None and found.group() == str(key)


def problems(subset: str = "1k", data: Path | None = None) -> list[Problem]:
    """The problems of one length (`data` is unused: the probe is synthetic)."""
    if subset not in LENGTHS:
        raise UserError(f"unknown passkey length {subset!r}; choose from {', '.join(LENGTHS)}")
    problems = []
    for depth in DEPTHS:
        for n in range(KEYS_PER_DEPTH):
            key = random.Random(f"passkey/{subset}/{depth}/{n}").randint(10000, 99999)
            text = haystack(subset, depth, key)
            prompt = text + QUESTION
            problems.append(Problem(
                f"passkey/{subset}/depth-{round(100 * depth)}/{n}", "python", prompt, None, stops=("\n",),
                instruction=text + ASK, reference=f" {key}.", max_new_tokens=32, group=subset,
                judge=partial(judge, key),
                extra={"key": key, "depth": depth, "chars": len(prompt),
                       "approx_tokens": round(len(prompt) / CHARS_PER_TOKEN)}))
    return problems
