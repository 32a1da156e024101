"""dscoder.repo.deps: in-repository import graphs per language and the order files are concatenated in.

Each fixture repository states the dependency sets its resolution rules must find and the one
order the tie rules (smallest in-degree, then path; subgraphs by their smallest path) give.
"""

from __future__ import annotations

import random
import time

import pytest

from dscoder.repo.deps import dependencies, groups, order

LANGUAGE = {
    ".py": "Python", ".pyi": "Python", ".java": "Java", ".cs": "C#", ".c": "C", ".h": "C",
    ".cpp": "C++", ".hpp": "C++", ".js": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript",
    ".tsx": "TSX", ".go": "Go", ".rs": "Rust", ".md": "Markdown", ".json": "JSON",
    ".yaml": "YAML", ".toml": "TOML", ".css": "CSS", ".cfg": "INI",
}


def as_files(repo: dict[str, str]) -> list[tuple[str, str, str]]:
    files = []
    for path, text in repo.items():
        ext = "." + path.rpartition(".")[2] if "." in path.rpartition("/")[2] else ""
        files.append((path, LANGUAGE.get(ext, "Text"), text))
    return files


def deps_by_path(repo: dict[str, str]) -> dict[str, list[str]]:
    files = as_files(repo)
    return {files[i][0]: sorted(files[j][0] for j in js) for i, js in dependencies(files).items() if js}


def ordered(repo: dict[str, str]) -> list[str]:
    files = as_files(repo)
    result = order(files)
    assert sorted(result) == list(range(len(files)))
    return [files[i][0] for i in result]


def assert_respected(repo: dict[str, str]) -> None:
    """Every edge has the dependency first (fixtures without cycles)."""
    position = {path: k for k, path in enumerate(ordered(repo))}
    for path, targets in deps_by_path(repo).items():
        for target in targets:
            assert position[target] < position[path], (target, path)


PYTHON = {
    "setup.py": "from setuptools import setup\nsetup(name='app')\n",
    "src/app/__init__.py": "from .core import run\n",
    "src/app/core.py": (
        "from . import util\n"
        "from app.models import Model  # a name of the package, not a module\n"
        "if TYPE_CHECKING: from app.models.base import Base\n"
    ),
    "src/app/util.py": (
        "import os, sys\n"
        "def lazy():\n"
        "    from app.models.base import Base  # imports inside functions count\n"
        "    return Base\n"
        '"""\n>>> import app.core  (a doctest line is not a statement)\n"""\n'
    ),
    "src/app/models/__init__.py": "from .base import Base\nModel = Base\n",
    "src/app/models/base.py": "class Base: pass\n",
    "tests/test_core.py": "import app.core\nfrom app.util import lazy\n",
}


def test_python_dependencies_and_order():
    assert deps_by_path(PYTHON) == {
        "src/app/__init__.py": ["src/app/core.py"],
        "src/app/core.py": ["src/app/models/__init__.py", "src/app/models/base.py", "src/app/util.py"],
        "src/app/util.py": ["src/app/models/base.py"],
        "src/app/models/__init__.py": ["src/app/models/base.py"],
        "tests/test_core.py": ["src/app/core.py", "src/app/util.py"],
    }
    assert ordered(PYTHON) == [
        "setup.py",  # a subgraph of its own, and "setup.py" < "src/..."
        "src/app/models/base.py", "src/app/models/__init__.py", "src/app/util.py",
        "src/app/core.py", "src/app/__init__.py", "tests/test_core.py",
    ]
    assert_respected(PYTHON)


def test_python_relative_multiline_and_roots():
    repo = {
        "pkg/__init__.py": "",
        "pkg/helpers.py": "",
        "pkg/other.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/sibling.py": "",
        "pkg/sub/mod.py": (
            "from ..helpers import h\n"
            "from . import sibling\n"
            "from .. import other\n"
            "import json\n"
        ),
        "pkg/sub/multi.py": (
            "from pkg.sub import (\n    sibling,\n    mod as m,\n)\n"
            "import pkg.helpers as h, pkg.other\n"
            "x = 1; from pkg.sub.nothing import y\n"
            "from pkg import \\\n    helpers\n"
        ),
        "py2/legacy.py": "print 'python 2'\nexec 'x'\nimport pkg.helpers\n",
        "scripts/run.py": "import helper_local\n",
        "scripts/helper_local.py": "",
        "tools/json.py": "",  # not a package root: `import json` elsewhere stays the stdlib's
        "binary.py": "\x00\x01\xff import \x00 from . import",
    }
    assert deps_by_path(repo) == {
        "pkg/sub/mod.py": ["pkg/helpers.py", "pkg/other.py", "pkg/sub/sibling.py"],
        "pkg/sub/multi.py": ["pkg/helpers.py", "pkg/other.py", "pkg/sub/__init__.py",
                             "pkg/sub/mod.py", "pkg/sub/sibling.py"],
        "py2/legacy.py": ["pkg/helpers.py"],
        "scripts/run.py": ["scripts/helper_local.py"],
    }
    assert_respected(repo)


JAVA = {
    "src/main/java/com/acme/App.java": (
        "package com.acme;\nimport com.acme.service.UserService;\nimport com.acme.model.User.Builder;\n"
        "public class App {}\n"
    ),
    "src/main/java/com/acme/service/UserService.java": (
        "package com.acme.service;\n\nimport com.acme.model.*;\nimport com.acme.util.Strings;\n"
        "import java.util.List;\nimport static com.acme.util.Strings.join;\n"
    ),
    "src/main/java/com/acme/model/User.java": "package com.acme.model;\npublic class User {}\n",
    "src/main/java/com/acme/model/Role.java": "package com.acme.model;\npublic enum Role {}\n",
    "src/main/java/com/acme/util/Strings.java": "package com.acme.util;\nimport java.util.*;\n",
}


def test_java_explicit_and_wildcard():
    root = "src/main/java/com/acme/"
    assert deps_by_path(JAVA) == {
        root + "App.java": [root + "model/User.java", root + "service/UserService.java"],
        root + "service/UserService.java": [root + "model/Role.java", root + "model/User.java",
                                            root + "util/Strings.java"],
    }
    assert ordered(JAVA) == [root + p for p in (
        "model/Role.java", "model/User.java", "util/Strings.java", "service/UserService.java", "App.java")]


CSHARP = {
    "Core/Models.cs": "namespace Acme.Core\n{\n    public class Model {}\n}\n",
    "Core/Util.cs": "namespace Acme.Core.Util;\n\npublic static class Strings {}\n",
    "App/Service.cs": "using System;\nusing Acme.Core;\nusing Acme.Core.Util;\n\nnamespace Acme.App {\n}\n",
    "App/Program.cs": (
        "global using Acme.App;\nusing static Acme.Core.Util.Strings;\nusing Json = System.Text.Json;\n"
        "namespace Acme.App.Main;\nclass P { void M() { using (var x = Open()) {} using var y = Open(); } }\n"
    ),
}


def test_csharp_namespaces():
    assert deps_by_path(CSHARP) == {
        "App/Service.cs": ["Core/Models.cs", "Core/Util.cs"],
        "App/Program.cs": ["App/Service.cs", "Core/Util.cs"],
    }
    assert ordered(CSHARP) == ["Core/Models.cs", "Core/Util.cs", "App/Service.cs", "App/Program.cs"]


C_CPP = {
    "include/mylib/api.h": "#pragma once\n#include <stdio.h>\n#include \"types.h\"\n",
    "include/mylib/types.h": "typedef int T;\n",
    "src/api.c": "#include \"mylib/api.h\"\n#  include \"internal.h\"\n",
    "src/internal.h": "#include \"../include/mylib/types.h\"\n",
    "src/main.cpp": "#include <mylib/api.h>\n#include <vector>\n/* #include \"nowhere.h\" */\n",
}


def test_c_and_cpp_includes():
    assert deps_by_path(C_CPP) == {
        "include/mylib/api.h": ["include/mylib/types.h"],  # relative to the including file
        "src/api.c": ["include/mylib/api.h", "src/internal.h"],  # by suffix, then relative
        "src/internal.h": ["include/mylib/types.h"],  # ../ resolved
        "src/main.cpp": ["include/mylib/api.h"],  # <...> by suffix
    }
    assert ordered(C_CPP) == [
        "include/mylib/types.h", "include/mylib/api.h", "src/internal.h", "src/api.c", "src/main.cpp"]


def test_c_suffix_ambiguity_prefers_the_nearest():
    repo = {"a/config.h": "", "b/config.h": "", "b/x/main.c": '#include "config.h"\n'}
    assert deps_by_path(repo) == {"b/x/main.c": ["b/config.h"]}


JS_TS = {
    "src/index.ts": (
        "import { a } from './lib';\nexport * from \"./util/format\";\n"
        "import type { T } from './types';\nimport _ from 'lodash';\n"
    ),
    "src/lib/index.ts": "const f = require('../util/format.js');\nexport const a = 1;\n",
    "src/util/format.ts": "export const lazy = () => import('./lazy');\n",
    "src/util/lazy.js": "import 'left-pad';\n",
    "src/types.d.ts": "export type T = number;\n",
    "src/app.jsx": "import React from 'react';\nimport './styles.css';\n",
    "src/styles.css": "body {}\n",
}


def test_javascript_typescript():
    assert deps_by_path(JS_TS) == {
        "src/index.ts": ["src/lib/index.ts", "src/types.d.ts", "src/util/format.ts"],
        "src/lib/index.ts": ["src/util/format.ts"],  # './format.js' is TypeScript's ESM spelling
        "src/util/format.ts": ["src/util/lazy.js"],  # dynamic import()
        "src/app.jsx": ["src/styles.css"],
    }
    assert ordered(JS_TS) == [
        "src/styles.css", "src/app.jsx",  # the subgraph holding "src/app.jsx" sorts first
        "src/types.d.ts", "src/util/lazy.js", "src/util/format.ts", "src/lib/index.ts", "src/index.ts"]


GO = {
    "go.mod": "module github.com/acme/tool\n\ngo 1.21\n",
    "cmd/tool/main.go": (
        "package main\n\nimport (\n\t\"fmt\"\n\t\"github.com/acme/tool/internal/store\"\n"
        "\tapi \"github.com/acme/tool/pkg/api\"\n)\n"
    ),
    "internal/store/store.go": "package store\n\nimport \"github.com/acme/tool/pkg/api\"\n",
    "internal/store/cache.go": "package store\n",
    "internal/store/store_test.go": (
        "package store\nimport \"testing\"\nimport \"github.com/acme/tool/pkg/api\"\n"),
    "pkg/api/api.go": "package api\n\nimport \"errors\"\n",
    "errors/errors.go": "package errors\n",  # the stdlib's `errors` must not resolve here
}


def test_go_module_paths():
    assert deps_by_path(GO) == {
        "cmd/tool/main.go": ["internal/store/cache.go", "internal/store/store.go",  # no _test.go
                             "pkg/api/api.go"],
        "internal/store/store.go": ["pkg/api/api.go"],
        "internal/store/store_test.go": ["pkg/api/api.go"],
    }
    assert ordered(GO) == [
        "internal/store/cache.go", "pkg/api/api.go", "internal/store/store.go", "cmd/tool/main.go",
        "internal/store/store_test.go", "errors/errors.go", "go.mod"]


def test_go_without_go_mod():
    repo = {
        "src/github.com/u/p/a/a.go": "package a\nimport \"github.com/u/p/b\"\n",  # GOPATH tree
        "src/github.com/u/p/b/b.go": "package b\n",
        "c/c.go": "package c\nimport \"github.com/u/p/d\"\nimport \"strings\"\n",  # repo root = .../p
        "d/d.go": "package d\n",
        "strings/s.go": "package strings\n",
    }
    assert deps_by_path(repo) == {
        "src/github.com/u/p/a/a.go": ["src/github.com/u/p/b/b.go"],
        "c/c.go": ["d/d.go"],
    }


RUST = {
    "Cargo.toml": "[package]\nname = \"mycrate\"\n",
    "src/lib.rs": "pub mod config;\nmod net;\npub use crate::net::client::Client;\n",
    "src/config.rs": "use std::fs;\nmod defaults;\n",
    "src/config/defaults.rs": "",
    "src/net/mod.rs": "pub mod client;\n#[cfg(test)]\npub(crate) mod proto;\n",
    "src/net/client.rs": "use super::proto::Frame;\nuse crate::{config::{self, Settings}, net::proto};\n",
    "src/net/proto.rs": "use crate::Error;\n",  # an item of the crate root: no edge
    "src/main.rs": "mod cli;\n",
    "src/cli.rs": "use crate::config::Settings as S;\n",
}


def test_rust_mod_and_use():
    assert deps_by_path(RUST) == {
        "src/lib.rs": ["src/config.rs", "src/net/client.rs", "src/net/mod.rs"],
        "src/config.rs": ["src/config/defaults.rs"],  # non-mod.rs file: modules in src/config/
        "src/net/mod.rs": ["src/net/client.rs", "src/net/proto.rs"],
        "src/net/client.rs": ["src/config.rs", "src/net/proto.rs"],
        "src/main.rs": ["src/cli.rs"],
        "src/cli.rs": ["src/config.rs"],
    }
    assert ordered(RUST) == [
        "Cargo.toml", "src/config/defaults.rs", "src/config.rs", "src/cli.rs", "src/main.rs",
        "src/net/proto.rs", "src/net/client.rs", "src/net/mod.rs", "src/lib.rs"]


def test_rust_workspace_crate_and_path_attribute():
    repo = {
        "crates/my-util/src/lib.rs": "pub mod text;\n",
        "crates/my-util/src/text.rs": "",
        "app/src/main.rs": "use my_util::text::wrap;\n#[path = \"gen/out.rs\"]\nmod generated;\n",
        "app/src/gen/out.rs": "",
    }
    assert deps_by_path(repo) == {
        "crates/my-util/src/lib.rs": ["crates/my-util/src/text.rs"],
        "app/src/main.rs": ["app/src/gen/out.rs", "crates/my-util/src/text.rs"],
    }


def test_cycle_is_broken_at_the_smallest_path():
    repo = {"a.py": "import b\n", "b.py": "import c\n", "c.py": "import a\n", "d.py": "import a\n"}
    assert deps_by_path(repo) == {"a.py": ["b.py"], "b.py": ["c.py"], "c.py": ["a.py"], "d.py": ["a.py"]}
    # all four have in-degree 1; a.py wins the tie, which frees c.py and d.py, then c.py frees b.py
    assert ordered(repo) == ["a.py", "c.py", "b.py", "d.py"]


def test_mixed_language_repository_and_groups():
    repo = {
        "web/app.js": "const u = require('./util');\n",
        "web/util.js": "module.exports = {};\n",
        "lib/__init__.py": "from .core import x\n",
        "lib/core.py": "x = 1\n",
        "README.md": "import this\n#include \"lib/core.py\"\n",
        "docs/guide.md": "",
        "pyproject.toml": "",
        "setup.cfg": "",
        "config.yaml": "",
    }
    expected = ["README.md", "config.yaml", "docs/guide.md", "lib/core.py", "lib/__init__.py",
                "pyproject.toml", "setup.cfg", "web/util.js", "web/app.js"]
    assert ordered(repo) == expected
    files = as_files(repo)
    assert [[files[i][0] for i in g] for g in groups(files)] == [
        ["README.md"], ["config.yaml"], ["docs/guide.md"], ["lib/core.py", "lib/__init__.py"],
        ["pyproject.toml"], ["setup.cfg"], ["web/util.js", "web/app.js"]]


def test_order_does_not_depend_on_input_order():
    repo = {}
    for fixture in (PYTHON, JAVA, CSHARP, C_CPP, JS_TS, RUST, {"x.py": "import y\n", "y.py": "import x\n"}):
        repo.update(fixture)
    repo.update({f"gosvc/{p}": t.replace("module github.com/acme/tool", "module github.com/acme/tool/gosvc")
                 .replace("github.com/acme/tool/", "github.com/acme/tool/gosvc/") for p, t in GO.items()})
    files = as_files(repo)
    expected = [files[i][0] for i in order(files)]
    assert len(expected) == len(set(expected)) == len(files)
    rng = random.Random(0)
    for _ in range(5):
        shuffled = files[:]
        rng.shuffle(shuffled)
        assert [shuffled[i][0] for i in order(shuffled)] == expected


@pytest.mark.parametrize("text", [
    "\x00" * 100, "\ud800 import \udfff", "from " * 10000, "import (" * 5000, "#include \"" * 5000,
    "use a::" + "{" * 5000 + "b" + "}" * 5000 + ";", "mod ;\nmod 1;\n", "import static ;",
    "namespace ;\nusing ;", "require(`./` + x)", "import \"\ngo", "x" * 2_000_000 + "\nimport a",
])
def test_odd_input_never_raises(text):
    languages = sorted(set(LANGUAGE.values())) + ["Go", "C#", "", "Unknown"]
    files = [(f"dir{k}/f{k}.txt", lang, text) for k, lang in enumerate(languages)]
    files += [("a.py", "Python", "import b"), ("./b.py", "Python", ""), ("", "C", "#include \"a.py\""),
              ("bytes.py", "Python", b"import a\n\xff"), ("none.py", "Python", None)]
    result = order(files)
    assert sorted(result) == list(range(len(files)))
    assert order([]) == [] and dependencies([]) == {}


def test_synthetic_5000_file_python_dag():
    rng = random.Random(1234)
    n, subpackages = 5000, 50
    expected: dict[str, set[str]] = {}
    repo = {"pkg/__init__.py": ""}
    repo.update({f"pkg/s{k}/__init__.py": "" for k in range(subpackages)})

    def path(i: int) -> str:
        return f"pkg/s{i % subpackages}/m{i}.py"

    for i in range(n):
        lines, targets = [], set()
        for j in rng.sample(range(i), min(i, rng.randint(0, 6))):
            k = j % subpackages
            form = rng.randrange(5)
            if form == 0:
                lines.append(f"import pkg.s{k}.m{j}")
            elif form == 1:
                lines.append(f"from pkg.s{k} import m{j}")
            elif form == 2:
                lines.append(f"from pkg.s{k}.m{j} import f{j}, g as h")
            elif k == i % subpackages:
                lines.append(f"from . import m{j}" if form == 3 else f"from .m{j} import f{j}")
            else:
                lines.append(f"from ..s{k} import m{j}" if form == 3 else f"from ..s{k}.m{j} import f{j}")
            targets.add(path(j))
        lines.append(f"def f{i}():\n    return {i}\n")
        repo[path(i)] = "\n".join(lines)
        expected[path(i)] = targets
    files = as_files(repo)
    random.Random(5).shuffle(files)

    start = time.perf_counter()
    result = order(files)
    elapsed = time.perf_counter() - start
    print(f"\n{len(files)} files ordered in {elapsed:.2f} s")

    assert sorted(result) == list(range(len(files)))
    found = dependencies(files)
    assert {files[i][0]: {files[j][0] for j in js} for i, js in found.items()
            if files[i][0] in expected} == expected
    position = {files[i][0]: k for k, i in enumerate(result)}
    for dependent, targets in expected.items():
        for target in targets:
            assert position[target] < position[dependent]
