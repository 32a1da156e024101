"""Infilling: cursor handling, the editor stop rules, and the FIM prompt reaching a real model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dscoder.infer.infill import InfillRules, _LineJudge, infill, split_at_cursor
from dscoder.infer.generate import SamplingParams
from dscoder.tokenizer.tokenizer import Tokenizer

def test_split_at_cursor_marker_and_line_col():
    text = "def f(x):\n    return <CURSOR>\n"
    assert split_at_cursor(text) == ("def f(x):\n    return ", "\n")
    assert split_at_cursor("a\nbcd\ne", line=2, col=2) == ("a\nb", "cd\ne")
    assert split_at_cursor("a\nbcd\ne", line=2) == ("a\nbcd", "\ne")
    with pytest.raises(ValueError, match="exactly one <CURSOR> marker \\(found 0\\)"):
        split_at_cursor("no marker")
    with pytest.raises(ValueError, match="--line 9 is outside the file \\(1..3\\)"):
        split_at_cursor("a\nb\nc", line=9)
    with pytest.raises(ValueError, match="--col 7 is outside line 1"):
        split_at_cursor("abc", line=1, col=7)


def judge(prefix, suffix, lines, **rules):
    j = _LineJudge(prefix, suffix, InfillRules(**rules))
    return [j.accepts(line) for line in lines]


def test_dedent_below_the_cursor_block_ends_the_middle():
    prefix = "def f(xs):\n    total = 0\n    for x in xs:\n        "
    assert judge(prefix, "", ["total += x", "        print(x)", "", "    return total"]) == [True, True, True, False]
    assert judge(prefix, "", ["total += x", "    return total"], stop_at_dedent=False) == [True, True]


def test_the_suffix_is_never_generated_again():
    prefix, suffix = "def f(x):\n    y = ", "\n    return y\n"
    assert judge(prefix, suffix, ["x * 2", "    return y"]) == [True, False]


def test_line_budget():
    assert judge("x = ", "", ["1", "y = 2", "z = 3"], max_lines=2) == [True, True, False]


@pytest.mark.parametrize("rules", [InfillRules(), InfillRules(max_lines=2), InfillRules(max_lines=1)])
def test_infill_is_the_raw_middle_cut_at_a_line_boundary(fim_model_dir, rules):
    from dscoder.tokenizer.fim import fim_prompt
    from dscoder.infer.generate import generate
    from dscoder.hub import load_model

    model, tok = load_model(fim_model_dir), Tokenizer.load(fim_model_dir)
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    params = SamplingParams(max_new_tokens=40)
    seen = []
    hook = model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(args[0][0].tolist()))
    middle = infill(model, tok, prefix, suffix, params=params, rules=rules)
    hook.remove()
    assert seen[0] == [32013, 32016, *tok.encode(prefix, add_bos=False), 32015, *tok.encode(suffix, add_bos=False),
                       32017]
    raw = generate(model, tok, fim_prompt(prefix, suffix), SamplingParams(max_new_tokens=40,
                                                                          stop_token_ids=(tok.eos_id,)))[0].text
    assert raw.startswith(middle) and middle != raw  # this model writes many lines: some rule always cuts
    assert raw[len(middle)] == "\n" and not middle.endswith("\n")  # at the end of a line, without its newline
    if rules.max_lines:
        assert middle.count("\n") <= rules.max_lines - 1
    for line in middle.split("\n")[1:]:
        assert not line.strip() or line.startswith("    ")  # nothing dedented past the cursor's block


def test_infill_cli_with_a_cursor_file(fim_model_dir, tmp_path):
    source = tmp_path / "a.py"
    source.write_text("def add(a, b):\n    <CURSOR>\n")
    out = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "infill", str(source), "--model", str(fim_model_dir),
                          "-n", "8", "--max-lines", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "\n" not in out.stdout  # one line at most, no newline of its own


def test_infill_cli_refuses_a_model_without_fim_tokens(smollm2_gguf):
    out = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "infill", "--prefix", "def f():", "--suffix", ""],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "has no fill-in-the-middle tokens" in out.stderr
