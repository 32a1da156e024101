"""Start-up: the commands that run no model import no torch, and the groups registered lazily
(`dscoder.cli.app.LAZY`) are listed, resolved and helped as if they were registered eagerly.

What each command imports is read from a real process's `sys.modules` after the command ran,
not timed: a heavy import that sneaks back in fails here by name.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from dscoder.cli.app import LAZY, app, load_lazy

# What a command that runs no model must not pull in: torch and what stands on it, and the rooms of
# the package that are heavy to import (trainer, harness, server, corpus pipeline).
HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "datasketch", "scipy", "dscoder.train", "dscoder.eval",
         "dscoder.serve", "dscoder.data", "dscoder.model.transformer", "dscoder.formats.hf")


def modules_after(tmp_path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules loaded by a fresh `dscoder ARGS` (run in-process by a small driver), and the run."""
    out = tmp_path / "modules.json"
    driver = ("import json, sys\nfrom dscoder.cli.app import app\n"
              "try:\n    app(args=sys.argv[2:], prog_name='dscoder')\nexcept SystemExit as e:\n    code = e.code\n"
              "json.dump(sorted(sys.modules), open(sys.argv[1], 'w'))\nsys.exit(code)\n")
    run = subprocess.run([sys.executable, "-c", driver, str(out), *args], capture_output=True, text=True,
                         timeout=120)
    return set(json.loads(out.read_text())), run


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["info", "deepseek-coder-1.3b-base", "--json"], ["complete", "--help"],
                                  ["detokenize", "--help"]],
                         ids=["help", "info-preset", "complete-help", "detokenize-help"])
def test_commands_that_run_no_model_import_no_torch(tmp_path, args):
    modules, run = modules_after(tmp_path, *args)
    assert run.returncode == 0, run.stderr
    assert heavy(modules) == []


def test_info_and_tokenize_on_the_embedded_model_import_no_torch(tmp_path, smollm2_gguf):
    for args in (["info", "--json"], ["tokenize", "--text", "def f(x):\n    return x\n"]):
        modules, run = modules_after(tmp_path, *args)
        assert run.returncode == 0, run.stderr
        assert heavy(modules) == [], args
    ids = json.loads(run.stdout)  # the last run: tokenize
    assert len(ids) > 3 and all(isinstance(i, int) for i in ids)


def test_a_lazy_group_is_imported_only_when_named(tmp_path):
    modules, run = modules_after(tmp_path, "train", "--help")
    assert run.returncode == 0, run.stderr
    assert "dscoder.cli.train" in modules and "dscoder.cli.eval" not in modules and "dscoder.serve" not in modules
    assert "pretrain" in run.stdout and "reward-model" in run.stdout


def first_paragraph(text: str) -> str:
    return inspect.cleandoc(text).split("\n\n")[0].replace("\n", " ")


@pytest.mark.parametrize("name", list(LAZY))
def test_the_listed_help_is_the_loaded_commands_own(name):
    """`dscoder --help` shows LAZY's text without importing; it must be what the command says of itself."""
    loaded = load_lazy(name)
    assert first_paragraph(loaded.help or "") == LAZY[name].help


def test_help_lists_every_command_in_registration_order():
    group = typer.main.get_command(app)
    names = group.list_commands(None)
    assert names[:3] == ["info", "convert", "complete"] and names[-len(LAZY):] == list(LAZY)
    text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"}).output
    for name, entry in LAZY.items():
        assert f" {name} " in text and entry.help in text


@pytest.mark.parametrize("args, expected", [(["serve", "--help"], "--max-running"),
                                            (["finetune", "--help"], "--recipe"),
                                            (["eval", "--help"], "humaneval"),
                                            (["tokenizer", "train", "--help"], "--vocab-size"),
                                            (["data", "--help"], "stats"),
                                            (["toolchains", "--help"], "sandbox")])
def test_lazy_commands_resolve_with_their_options(args, expected):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert expected in result.output


def test_a_typo_of_a_lazy_command_is_suggested():
    result = CliRunner().invoke(app, ["serv"])
    assert result.exit_code == 2 and "Did you mean 'serve'?" in result.output
