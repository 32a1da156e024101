"""The DeepSeek-Coder papers' own numbers, to print beside ours when the model under test is theirs.

Each number is copied from a table in DeepSeek's repositories at the commit named in its
source, so a reader can check it; nothing here is estimated. A number is keyed by the
benchmark, subset and prompt form our harness runs, and only where the protocol is the
same (DeepSeek's `Evaluation/` scripts, which ours follow). Numbers measured on a set we do
not have carry a `note` saying so (SantaCoder's single-line FIM set, say), and the report
shows the note rather than pretending the two are comparable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

V1_HUMANEVAL = "deepseek-ai/DeepSeek-Coder@cae2ab3:Evaluation/HumanEval/README.md"
V1_MBPP = "deepseek-ai/DeepSeek-Coder@13d5e48:Evaluation/MBPP/README.md"
V1_PAL = "deepseek-ai/DeepSeek-Coder@3963f91:Evaluation/PAL-Math/README.md"
V1_LEETCODE = "deepseek-ai/DeepSeek-Coder@ab5d1b2:Evaluation/LeetCode/readme.md"
V2_README = "deepseek-ai/DeepSeek-Coder-V2@c59bc46:README.md"
ISSUE_21 = "the V2 paper's FIM table as quoted in dscoder issue 21 (not checked against the paper here)"


@dataclass(frozen=True)
class Published:
    value: float  # percent
    source: str
    note: str = ""


# HumanEval, DeepSeek's multilingual table: python, cpp, java, php, ts, cs, sh, js (greedy, 500 new tokens).
_HUMANEVAL_LANGUAGES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")
_HUMANEVAL = {
    ("deepseek-coder-1.3b-base", "base"): (34.8, 31.1, 32.3, 24.2, 28.9, 36.7, 10.1, 28.6),
    ("deepseek-coder-5.7bmqa-base", "base"): (48.7, 45.3, 41.1, 39.7, 44.7, 41.1, 27.8, 42.2),
    ("deepseek-coder-6.7b-base", "base"): (49.4, 50.3, 43.0, 38.5, 49.7, 50.0, 28.5, 48.4),
    ("deepseek-coder-33b-base", "base"): (56.1, 58.4, 51.9, 44.1, 52.8, 51.3, 32.3, 55.3),
    ("deepseek-coder-1.3b-instruct", "instruct"): (65.2, 45.3, 51.9, 45.3, 59.7, 55.1, 12.7, 52.2),
    ("deepseek-coder-6.7b-instruct", "instruct"): (78.9, 63.4, 68.4, 68.9, 67.2, 72.8, 36.7, 72.7),
    ("deepseek-coder-33b-instruct", "instruct"): (79.3, 68.9, 73.4, 72.7, 67.9, 74.1, 43.0, 73.9),
}


def _table() -> dict[str, dict[tuple[str, str, str], Published]]:
    """model -> (benchmark, subset, form) -> the published number."""
    table: dict[str, dict[tuple[str, str, str], Published]] = {}

    def put(model: str, benchmark: str, subset: str, form: str, value: float, source: str, note: str = "") -> None:
        table.setdefault(model, {})[(benchmark, subset, form)] = Published(value, source, note)

    for (model, form), values in _HUMANEVAL.items():
        for language, value in zip(_HUMANEVAL_LANGUAGES, values):
            put(model, "humaneval", language, form, value, V1_HUMANEVAL)
    for model, value in (("1.3b", 46.8), ("5.7bmqa", 57.2), ("6.7b", 60.6), ("33b", 66.0)):
        put(f"deepseek-coder-{model}-base", "mbpp", "", "base", value, V1_MBPP)
    for model, value in (("1.3b", 49.4), ("6.7b", 65.4), ("33b", 70.0)):
        put(f"deepseek-coder-{model}-instruct", "mbpp", "", "instruct", value, V1_MBPP)
    for model, gsm8k, gsm_hard in (("1.3b", 14.6, 14.5), ("5.7bmqa", 38.8, 36.8), ("6.7b", 43.2, 40.3),
                                   ("33b", 60.7, 54.1)):
        put(f"deepseek-coder-{model}-base", "gsm8k", "pal", "base", gsm8k, V1_PAL)
        put(f"deepseek-coder-{model}-base", "gsm-hard", "pal", "base", gsm_hard, V1_PAL)
    for model, plain, cot in (("1.3b", 7.2, 7.2), ("6.7b", 19.4, 21.1), ("33b", 27.8, 28.9)):
        put(f"deepseek-coder-{model}-instruct", "leetcode", "en", "instruct", plain, V1_LEETCODE)
        put(f"deepseek-coder-{model}-instruct", "leetcode", "en-cot", "instruct", cot, V1_LEETCODE)
    put("deepseek-coder-33b-instruct", "mbpp+", "", "instruct", 70.1, V2_README)
    for model, humaneval, mbpp_plus, gsm8k, math in (("deepseek-coder-v2-lite-instruct", 81.1, 68.8, 86.4, 61.8),
                                                     ("deepseek-coder-v2-instruct", 90.2, 76.2, 94.9, 75.7)):
        put(model, "humaneval", "python", "instruct", humaneval, V2_README)
        put(model, "mbpp+", "", "instruct", mbpp_plus, V2_README)
        put(model, "gsm8k", "cot", "instruct", gsm8k, V2_README)
        put(model, "math", "test", "instruct", math, V2_README)
    for language, value in (("python", 80.0), ("java", 89.1), ("js", 87.2)):
        benchmark, subset = ("humaneval-infilling", "single-line") if language == "python" else ("fim-lines", language)
        put("deepseek-coder-v2-lite-base", benchmark, subset, "base", value, ISSUE_21,
            "exact match on SantaCoder's single-line FIM set, which is not available here; ours is another set")
    return table


PUBLISHED = _table()


def model_key(model: str | None) -> str | None:
    """The published model a model argument names (a preset, an alias, a repo id or a directory named
    after the model), or None when it is not one of DeepSeek's."""
    if not model:
        return None
    from dscoder.model.presets import ALIASES, PRESETS

    name = Path(str(model).rstrip("/")).name.lower()
    name = ALIASES.get(name, name)
    for preset, entry in PRESETS.items():
        if name in (preset, str(entry.hf_repo or "").split("/")[-1].lower()):
            return preset if preset in PUBLISHED else None
    match = re.fullmatch(r"(deepseek-coder-[\w.-]+?)(-gguf|-q\w+)?", name)
    return match.group(1) if match and match.group(1) in PUBLISHED else None


def lookup(model: str | None, benchmark: str, subset: str, form: str) -> Published | None:
    key = model_key(model)
    return PUBLISHED.get(key, {}).get((benchmark, subset, form)) if key else None
