"""Task commands: documented prompts, code taken from fenced blocks, and the commands run end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dscoder.infer.assist import extract_code, language_of, task_prompt


def test_extract_code_picks_the_right_block():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_code("```js\nx()\n```\n```python\ny()\nz()\n```\n```python\nw()\n```", "Python") == "y()\nz()\n"
    assert extract_code("```rust\nfn main() {}\n```\n```\nlonger untagged\nblock\n```", "Rust") == "fn main() {}\n"
    assert extract_code("```cpp\nint x;\n```", "C++") == "int x;\n"
    assert extract_code("```python\ncut off by the token budget\n  more") == "cut off by the token budget\n  more\n"
    assert extract_code("  no fences at all  ") == "no fences at all\n"
    assert extract_code("~~~\ntilde fence\n~~~") == "tilde fence\n"


def test_prompts_name_the_language_and_carry_the_inputs():
    prompt = task_prompt("tests", "def f(): pass\n", "m.py")
    assert "pytest" in prompt and "Python" in prompt and prompt.endswith("```\ndef f(): pass\n```")
    assert "idiomatic Rust" in task_prompt("translate", "x", "a.go", target="Rust")
    assert "ZeroDivisionError: x" in task_prompt("fix", "1/0", "a.py", error="ZeroDivisionError: x")
    assert language_of("Main.java") == "Java" and language_of("notes.unknown") == "source"
    with pytest.raises(ValueError, match="translate needs a target language"):
        task_prompt("translate", "x", "a.py")
    with pytest.raises(ValueError, match="fix needs the error message"):
        task_prompt("fix", "x", "a.py")
    with pytest.raises(ValueError, match="unknown task 'summarise'"):
        task_prompt("summarise", "x")


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "dscoder.cli.app", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_translate_prints_only_code(smollm2_gguf, tmp_path):
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return a + b\n")
    out = run("translate", str(source), "--to", "JavaScript", "-n", "120")
    assert out.returncode == 0, out.stderr
    assert "```" not in out.stdout and "function add(a, b)" in out.stdout


@pytest.mark.slow  # long (CI time); run with pytest -m slow
def test_review_reads_a_diff_from_stdin_and_explain_streams_prose(smollm2_gguf, tmp_path):
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def div(a, b):\n-    return a / b\n+    return a // b\n"
    out = run("review", "-n", "40", stdin=diff)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) > 20
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return a + b\n")
    out = run("explain", str(source), "-n", "40")
    assert out.returncode == 0 and len(out.stdout.split()) > 10


def test_fix_without_error_is_a_usage_error(tmp_path):
    source = tmp_path / "a.py"
    source.write_text("x = 1/0\n")
    out = run("fix", str(source))
    assert out.returncode == 2 and "--error" in out.stderr
