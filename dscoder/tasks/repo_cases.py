"""repo-completion's cases: lines of real repositories whose next line needs a name defined in another file.

OUR CONSTRUCTION, in the style of RepoBench's "cross-file-first" setting (Liu et al. 2023) and
CrossCodeEval: a case is a line of a file F whose first use of some identifier refers to a
definition (a `def`, a `class` or a top-level assignment) in another file G of the same
repository, imported by F directly (`from pkg.g import name`, `from .g import name`, or
`import pkg.g as m` / `from pkg import g` and then `m.name`), and used nowhere in F before that
line (its import aside). Seeing G should help; seeing F alone should not be enough.

The repositories are Python packages installed in this machine's site-packages, chosen for many
imports between their own files (`dscoder.repo.deps.dependencies`), for being installed by
`make setup` (pinned there where possible, else present in a fresh set-up; each case says which
version it was built on), and for releases later than the training data of the models here
(SmolLM2, the embedded model, saw data up to about mid 2024). That last point cannot be proven:
much of a package's code outlives the release that carries it, and a model may have seen an
older copy of the same lines. `REPOSITORIES` lists them with the reasons.

A repository here is a package's Python sources: every `.py` and `.pyi` file under its directory
that the project's safe reader (`dscoder.repo.ingest.Tree`: no link followed, nothing larger than
1 MiB) reads as text, less the directories it never reads (`__pycache__`, dot-directories). Those
files, and nothing else, are what the repository context may read at run time (`stage` copies
exactly them), so `files_sha256`, a sha256 over their `(sha256, path)` list, detects any change
that could change a prompt.

A case's line (filters in `candidates`): at least `MIN_LINE` lines into its file, after the
import that binds the name, code and not a comment, docstring or import, 4-200 characters
stripped, and not first-used in a way that could be another binding (a parameter, local or
assignment of the same name anywhere in F rules the name out). In each repository candidates
are shuffled with a seeded generator (`--seed`, 0 for the shipped file), at most `PER_FILE`
lines per file and no two cases with the same stripped text, up to `per_repo` cases; the file
lists the repositories round-robin, so `--limit N` samples every one of them.

Read back (`load`), a repository that is not installed, or whose files differ from the case
file's hash (another version), has its cases left out by name, never scored 0; a case file that
names a path outside its repository, or whose cases do not match files that do match their
hash, is refused (`CaseFileError`, naming the line).

Rebuild with `python -m dscoder.tasks.repo_cases build --out FILE` (byte-identical on the same
installed files), or `survey` to list the candidate packages with their import-graph edges.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import random
import re
import site
import sys
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

from dscoder.errors import UserError
from dscoder.files import write_atomic
from dscoder.repo.deps import dependencies
from dscoder.repo.ingest import MAX_FILE_BYTES, Tree, discover, skipped_path

FORMAT = 1
SOURCE_SUFFIXES = (".py", ".pyi")
MIN_LINE = 10  # a case's line is at least this far into its file (not the first lines of a file)
MIN_CHARS, MAX_CHARS = 4, 200  # of the stripped target line
PER_FILE = 2  # cases per file at most
PER_REPO = 40  # cases per repository at most (the shipped file: fewer where a package has fewer)


class CaseFileError(UserError):
    """A repo-completion case file is malformed, names a path outside its repository, or disagrees with
    files that match its hashes."""


@dataclass(frozen=True)
class Repository:
    """A package to take cases from: its directory relative to site-packages, the distribution that
    installs it (whose version the cases record) and why it was chosen."""

    root: str
    dist: str
    why: str


# Chosen with `survey` on the build machine (Python 3.11): packages of `make setup`, pure Python where
# the cases are, with hundreds of edges between their own files, and releases from after mid 2024.
# torch and evalplus are pinned by the set-up itself (Makefile: torch==2.13.0, evalplus==0.3.1); the
# others are whatever a fresh `pip install -e .[dev]` resolves, so a later set-up may install another
# version (its cases are then left out by name; `pip install DIST==VERSION` or a rebuilt file brings them back).
REPOSITORIES = (
    Repository("torch/_dynamo", "torch", "pinned (torch==2.13.0 in the Makefile); TorchDynamo changes with every "
                                         "release, 117 files, 2.13 is from 2026"),
    Repository("evalplus", "evalplus", "pinned (evalplus==0.3.1, the evalplus extra), released after mid 2024"),
    Repository("schemathesis", "schemathesis", "the dev extra; the 4.x series (2025 on) is a rewrite"),
    Repository("openai", "openai", "the dev extra; generated client whose types change every release, 3.x is "
                                   "recent"),
    Repository("huggingface_hub", "huggingface_hub", "a core dependency; 2.x is from after 2024"),
    Repository("peft", "peft", "the dev extra; 0.21 is from after 2024"),
    Repository("trl", "trl", "the dev extra; 1.x is from after 2024"),
    Repository("pydantic", "pydantic", "installed for fastapi and openai; 2.13 is from after 2024"),
    Repository("accelerate", "accelerate", "the dev extra; 1.x is from after 2024"),
)


# ---- a repository's files: listed, read, hashed, staged --------------------------------------------

@dataclass
class Files:
    """The Python sources of one installed repository, as the context may read them: path relative to
    the repository root -> text, and the hash over all of them."""

    texts: dict[str, str]
    sha256: dict[str, str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of source files not read

    @property
    def files_sha256(self) -> str:
        return files_hash(self.sha256)


def files_hash(sha256: dict[str, str]) -> str:
    """sha256 over the `<sha256>  <path>` lines (sha256sum's format), sorted by path."""
    listing = "".join(f"{sha256[path]}  {path}\n" for path in sorted(sha256))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def read_repository(directory: Path) -> Files:
    """Every .py/.pyi file under `directory` that the safe reader gives as text (links never followed,
    nothing over 1 MiB, no __pycache__ or dot-directory), with each file's sha256 (of its UTF-8 text)."""
    listed = discover([str(directory)])[0]
    files = Files({}, {}, list(listed.skipped))
    with Tree(listed.root) as tree:
        for rel in listed.files:
            if not rel.endswith(SOURCE_SUFFIXES):
                continue
            why = skipped_path(rel)
            if why is None:
                got = tree.read(rel, MAX_FILE_BYTES)
                why = got.why if got.text is None or got.why is not None else None
            if why is not None:
                files.skipped.append((rel, why))
                continue
            files.texts[rel] = got.text
            files.sha256[rel] = hashlib.sha256(got.text.encode("utf-8")).hexdigest()
    return files


def stage(files: Files, root: str, into: Path) -> Path:
    """Write the repository's files under `into/<root>/` and return `into`: the directory a repository
    index is built on, holding exactly the hashed files, under their site-packages paths (so an absolute
    import of the package, `from pydantic.fields import ...`, resolves inside it)."""
    base = into / root
    for rel, text in files.texts.items():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return into


def site_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Where repositories are looked for: the directories given, else this interpreter's site-packages
    (and the user's)."""
    given = [Path(p) for p in extra]
    if given:
        return given
    dirs = [Path(p) for p in site.getsitepackages()]
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.append(Path(user))
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def find_root(root: str, dirs: list[Path]) -> Path | None:
    """The first `dir/root` that is a directory (not a link leading out of `dir`), or None."""
    for base in dirs:
        candidate = base / root
        if candidate.is_dir():
            real, anchor = candidate.resolve(), base.resolve()
            if anchor in real.parents:
                return candidate
    return None


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# ---- finding the lines ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    file: str  # relative to the repository root
    line: int  # 1-based
    target: str  # the line's text, without its newline
    name: str  # the identifier first used there ("m.name" for a module alias)
    defined_in: str  # the file whose definition it refers to
    defined_line: int


def definitions(tree: ast.Module) -> dict[str, int]:
    """Name -> line of each module-level definition: def, class, assignment with a value (also inside
    module-level if/try/with blocks, where optional imports and TYPE_CHECKING branches put them)."""
    found: dict[str, int] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(node.name, node.lineno)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in _names(target):
                        found.setdefault(name, node.lineno)
            elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
                found.setdefault(node.target.id, node.lineno)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                visit(node.body)

    visit(tree.body)
    return found


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _names(element)]
    return []


def module_path(parts: list[str], files: dict[str, object]) -> str | None:
    """The file of a module given as path components relative to the staged root: `a/b.py`, else
    `a/b/__init__.py` (stubs after sources)."""
    if not parts or any(not p for p in parts):
        return None
    base = "/".join(parts)
    for candidate in (base + ".py", base + "/__init__.py", base + ".pyi", base + "/__init__.pyi"):
        if candidate in files:
            return candidate
    return None


@dataclass(frozen=True)
class _Binding:
    """A name F binds by importing from another file of the repository: `name` used alone refers to
    `attr` of `module` (a definition), or, for a module alias (`attr` None), `name.x` refers to x there."""

    name: str
    module: str  # the imported file, relative to the staged root (root/...)
    attr: str | None
    line: int  # the import statement's last line


def bindings(tree: ast.Module, path: str, prefix: str, files: dict[str, object]) -> list[_Binding]:
    """What F's module-level imports (also in module-level if/try blocks) bind to files of the repository.
    `path` is F relative to the staged root; `prefix` the dotted name of the repository root (absolute
    imports must start with it)."""
    package = path.split("/")[:-1]  # F's package, as path components
    top = prefix.split(".")
    found: list[_Binding] = []

    def absolute(dotted: str) -> list[str] | None:
        parts = dotted.split(".")
        return parts if parts[:len(top)] == top else None

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(package):
                        continue
                    base = package[:len(package) - node.level + 1]
                    parts = base + (node.module.split(".") if node.module else [])
                else:
                    parts = absolute(node.module or "")
                    if parts is None:
                        continue
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    bound = alias.asname or alias.name
                    submodule = module_path(parts + [alias.name], files)
                    if submodule is not None:
                        found.append(_Binding(bound, submodule, None, node.end_lineno or node.lineno))
                        continue
                    module = module_path(parts, files)
                    if module is not None:
                        found.append(_Binding(bound, module, alias.name, node.end_lineno or node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = absolute(alias.name)
                    module = module_path(parts, files) if parts is not None and alias.asname else None
                    if module is not None:  # `import pkg.g as m`; a plain `import pkg.g` binds `pkg`
                        found.append(_Binding(alias.asname, module, None, node.end_lineno or node.lineno))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _import_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _rebound(tree: ast.Module) -> set[str]:
    """Names F binds other than by import: parameters, assignment and loop targets, defs, classes,
    globals, comprehension and except targets. Such a name's first use may not be the import's."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchAs) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def _string_lines(text: str) -> set[int]:
    """Lines that a multi-line string (a docstring) continues onto: not lines of code on their own."""
    lines: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                lines.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set(range(1, text.count("\n") + 2))  # a file tokenize gives up on gives no case
    return lines


def first_uses(tree: ast.Module, wanted: dict[str, _Binding]) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(binding name, attribute for a module alias) -> (line, column) of its first use in F outside
    import statements: a load of the name, or of `alias.attr`."""
    skip = _import_lines(tree)
    first: dict[tuple[str, str | None], tuple[int, int]] = {}

    def note(key: tuple[str, str | None], node: ast.AST) -> None:
        at = (node.lineno, node.col_offset)
        if node.lineno not in skip and (key not in first or at < first[key]):
            first[key] = at

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            binding = wanted.get(node.value.id)
            if binding is not None and binding.attr is None:
                note((node.value.id, node.attr), node)
        elif isinstance(node, ast.Name):
            binding = wanted.get(node.id)
            if binding is not None and binding.attr is not None:
                note((node.id, None), node)
    return first


def candidates(path: str, text: str, files: dict[str, str], prefix: str, trees: dict[str, ast.Module | None],
               defs: dict[str, dict[str, int]], edges: set[str]) -> list[Candidate]:
    """The case lines of one file F (`path` relative to the staged root), each with the identifier first
    used there and the file defining it. `edges`: the files F imports according to the import graph
    (`dscoder.repo.deps`), which a definition's file must be among, so the context can reach it."""
    tree = trees.get(path)
    if tree is None:
        return []
    lines = text.split("\n")
    wanted: dict[str, _Binding] = {}
    for binding in bindings(tree, path, prefix, files):
        if binding.module != path and binding.module in edges:
            wanted.setdefault(binding.name, binding)  # the first import of a name stands for it
    rebound = _rebound(tree)
    wanted = {name: b for name, b in wanted.items() if name not in rebound}
    if not wanted:
        return []
    strings = _string_lines(text)
    imports = _import_lines(tree)
    by_line: dict[int, tuple[int, Candidate]] = {}
    for (name, attr), (line, column) in first_uses(tree, wanted).items():
        binding = wanted[name]
        defined = attr if binding.attr is None else binding.attr
        line_of_def = defs.get(binding.module, {}).get(defined)
        if line_of_def is None or line <= binding.line or line < MIN_LINE or line in strings or line in imports:
            continue
        target = lines[line - 1] if line - 1 < len(lines) else ""
        body = target.strip()
        if not (MIN_CHARS <= len(body) <= MAX_CHARS) or body.startswith("#") or re.match(r"(from|import)\s", body):
            continue
        shown = f"{name}.{attr}" if binding.attr is None else name
        candidate = Candidate(path, line, target.rstrip("\r"), shown, binding.module, line_of_def)
        if line not in by_line or column < by_line[line][0]:
            by_line[line] = (column, candidate)
    return [c for _, (_, c) in sorted(by_line.items())]


def parse(texts: dict[str, str]) -> dict[str, ast.Module | None]:
    trees: dict[str, ast.Module | None] = {}
    for path, text in texts.items():
        try:
            trees[path] = ast.parse(text, path)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            trees[path] = None
    return trees


def repository_candidates(files: Files, root: str) -> list[Candidate]:
    """Every candidate line of a repository whose files are `files` (paths relative to `root`); the
    candidates' paths are relative to `root` too."""
    staged = {f"{root}/{rel}": text for rel, text in files.texts.items()}
    order = sorted(staged)
    graph = dependencies([(path, "Python", staged[path]) for path in order])
    trees = parse(staged)
    defs = {path: definitions(tree) for path, tree in trees.items() if tree is not None}
    prefix = root.replace("/", ".")
    found = []
    for i, path in enumerate(order):
        if not path.endswith(".py"):
            continue  # stubs are context, not cases
        edges = {order[j] for j in graph[i]}
        for c in candidates(path, staged[path], staged, prefix, trees, defs, edges):
            found.append(Candidate(_under(c.file, root), c.line, c.target, c.name, _under(c.defined_in, root),
                                   c.defined_line))
    return found


def _under(path: str, root: str) -> str:
    return path[len(root) + 1:]


# ---- building a case file --------------------------------------------------------------------------

def choose(found: list[Candidate], count: int, rng: random.Random, per_file_most: int = PER_FILE) -> list[Candidate]:
    """Up to `count` candidates in a seeded order, at most `per_file_most` per file, no repeated line text."""
    pool = sorted(found, key=lambda c: (c.file, c.line))
    rng.shuffle(pool)
    chosen, per_file, texts = [], {}, set()
    for c in pool:
        if len(chosen) >= count:
            break
        if per_file.get(c.file, 0) >= per_file_most or c.target.strip() in texts:
            continue
        per_file[c.file] = per_file.get(c.file, 0) + 1
        texts.add(c.target.strip())
        chosen.append(c)
    return chosen


def case_row(repo: Repository, version: str, files: Files, c: Candidate) -> dict:
    return {"format": FORMAT, "task_id": f"{repo.root}/{c.file}:{c.line}", "repo": f"{repo.dist}=={version}",
            "dist": repo.dist, "version": version, "root": repo.root, "file": c.file, "line": c.line,
            "target": c.target, "name": c.name, "defined_in": c.defined_in, "defined_line": c.defined_line,
            "file_sha256": files.sha256[c.file], "files": len(files.sha256), "files_sha256": files.files_sha256}


def build(repositories: Iterable[Repository] = REPOSITORIES, per_repo: int = PER_REPO, seed: int = 0,
          dirs: list[Path] | None = None, on_repo=None, per_file: int = PER_FILE) -> list[dict]:
    """The case rows from the repositories installed here, round-robin across repositories (so the first
    N cases sample every one of them). `on_repo(repo, version, files, candidates, chosen)` hears of each."""
    dirs = site_dirs() if dirs is None else dirs
    per: list[list[dict]] = []
    for repo in repositories:
        directory = find_root(repo.root, dirs)
        if directory is None:
            raise UserError(f"{repo.root} is not installed in {', '.join(map(str, dirs))}")
        version = version_of(repo.dist) or "unknown"
        files = read_repository(directory)
        found = repository_candidates(files, repo.root)
        chosen = choose(found, per_repo, random.Random(f"repo-completion/{repo.root}/{seed}"), per_file)
        if on_repo is not None:
            on_repo(repo, version, files, found, chosen)
        per.append([case_row(repo, version, files, c) for c in sorted(chosen, key=lambda c: (c.file, c.line))])
    rows = []
    for i in range(max((len(p) for p in per), default=0)):
        rows += [p[i] for p in per if i < len(p)]
    return rows


def survey(dirs: list[Path] | None = None, min_files: int = 15, max_files: int = 3000) -> list[tuple[str, int, int]]:
    """(package, Python files, edges between them) for every top-level package in site-packages with
    `min_files`-`max_files` files, most edges first: how the repositories were chosen."""
    rows = []
    for base in site_dirs() if dirs is None else dirs:
        for directory in sorted(p for p in base.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
            if directory.name.startswith((".", "_")) or directory.is_symlink():
                continue
            files = read_repository(directory)
            if not min_files <= len(files.texts) <= max_files:
                continue
            order = sorted(files.texts)
            graph = dependencies([(f"{directory.name}/{p}", "Python", files.texts[p]) for p in order])
            rows.append((directory.name, len(order), sum(len(v) for v in graph.values())))
    return sorted(rows, key=lambda r: (-r[2], r[0]))


# ---- reading a case file back ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    task_id: str
    dist: str
    version: str
    root: str  # relative to site-packages
    file: str  # relative to root
    line: int
    target: str
    name: str
    defined_in: str  # relative to root
    file_sha256: str
    files_sha256: str

    @property
    def path(self) -> str:
        """The file as the model sees it (`#path`) and as the repository index knows it: root/file."""
        return f"{self.root}/{self.file}"


_FIELDS = {"task_id": str, "dist": str, "version": str, "root": str, "file": str, "line": int, "target": str,
           "name": str, "defined_in": str, "file_sha256": str, "files_sha256": str}


def relative(path: object, where: str, what: str) -> str:
    """`path` as a plain relative path (no root, no `..`, no empty or odd parts), or CaseFileError."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path or "\n" in path:
        raise CaseFileError(f"{where}: {what} {path!r} is not a relative path")
    if PurePosixPath(path).is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise CaseFileError(f"{where}: {what} {path!r} must stay inside site-packages (no absolute path, no '..')")
    return path


def read_cases(path: Path) -> list[Case]:
    """The cases of a JSONL case file, every field checked; CaseFileError names `path:line` at fault."""
    cases, seen = [], set()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaseFileError(f"{path}: not UTF-8 text ({e})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CaseFileError(f"{where}: not a JSON line ({e})") from None
        if not isinstance(row, dict) or row.get("format") != FORMAT:
            raise CaseFileError(f"{where}: not a repo-completion case of format {FORMAT}")
        for name, kind in _FIELDS.items():
            if not isinstance(row.get(name), kind) or isinstance(row.get(name), bool):
                raise CaseFileError(f"{where}: field {name!r} must be a {kind.__name__}")
        for name in ("file_sha256", "files_sha256"):
            if not re.fullmatch(r"[0-9a-f]{64}", row[name]):
                raise CaseFileError(f"{where}: {name} must be 64 hex digits")
        if row["line"] < 1:
            raise CaseFileError(f"{where}: line must be >= 1")
        for name in ("root", "file", "defined_in"):
            relative(row[name], where, name)
        if not row["file"].endswith(".py"):
            raise CaseFileError(f"{where}: file {row['file']!r} is not a Python file")
        if row["task_id"] in seen:
            raise CaseFileError(f"{where}: task_id {row['task_id']!r} appears twice")
        seen.add(row["task_id"])
        cases.append(Case(**{name: row[name] for name in _FIELDS}))
    return cases


@dataclass
class Loaded:
    """The cases that can run here, each repository's files (read once, hashed, ready to stage), and the
    cases left out, by task_id, with why."""

    cases: list[Case]
    files: dict[str, Files]  # by root
    left_out: dict[str, str]


def load(path: Path, dirs: list[Path] | None = None) -> Loaded:
    """Read a case file and check every case against the installed repository it names: a repository
    missing or changed (another version: its files' hash differs) leaves its cases out by name. A case
    whose repository matches its hash but whose own file, line or text does not is a wrong case file
    (CaseFileError)."""
    cases = read_cases(path)
    dirs = site_dirs() if dirs is None else dirs
    files: dict[str, Files] = {}
    missing: dict[str, str] = {}
    kept, left_out = [], {}
    for case in cases:
        if case.root not in files and case.root not in missing:
            directory = find_root(case.root, dirs)
            if directory is None:
                missing[case.root] = f"{case.root} is not installed (the cases are of {case.dist} {case.version})"
            else:
                files[case.root] = read_repository(directory)
        if case.root in missing:
            left_out[case.task_id] = missing[case.root]
            continue
        got = files[case.root]
        if got.files_sha256 != case.files_sha256:
            now = version_of(case.dist) or "unknown"
            left_out[case.task_id] = (f"{case.root} differs from the one the cases were built on ({case.dist} {now} "
                                      f"installed, the cases are of {case.version}: files_sha256)")
            continue
        where = f"{path} ({case.task_id})"
        if got.sha256.get(case.file) != case.file_sha256:
            raise CaseFileError(f"{where}: {case.file} does not match file_sha256 although its repository matches "
                                f"files_sha256: the case itself is wrong")
        if case.defined_in not in got.texts:
            raise CaseFileError(f"{where}: defined_in {case.defined_in!r} is not a file of {case.root}")
        lines = got.texts[case.file].split("\n")
        if case.line > len(lines) or lines[case.line - 1].rstrip("\r") != case.target:
            raise CaseFileError(f"{where}: line {case.line} of {case.file} is not the case's target (the file "
                                f"matches its hash, so the case itself is wrong)")
        kept.append(case)
    return Loaded(kept, {root: f for root, f in files.items() if any(c.root == root for c in kept)}, left_out)


def pieces(case: Case, files: Files) -> tuple[str, str, str]:
    """(prefix, target line with its newline, suffix) of the case's file: the text before the line, the
    line, and the text after it."""
    lines = files.texts[case.file].split("\n")
    prefix = "".join(line + "\n" for line in lines[:case.line - 1])
    rest = lines[case.line:]
    suffix = "\n".join(rest)
    return prefix, lines[case.line - 1] + "\n", suffix


# ---- the command line --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dscoder.tasks.repo_cases",
                                     description="Build repo-completion's case file from the packages installed here.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="choose the cases and write them as JSONL")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--per-repo", type=int, default=PER_REPO)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--site", type=Path, action="append", default=[],
                      help="a site-packages directory to take the packages from (default: this Python's)")
    look = sub.add_parser("survey", help="list site-packages' packages by edges between their own files")
    look.add_argument("--site", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    try:
        if args.command == "survey":
            for name, count, edges in survey(site_dirs(args.site)):
                print(f"{name:<32} {count:>6} files {edges:>7} edges")
            return 0

        def report(repo, version, files, found, chosen):
            print(f"{repo.root} ({repo.dist} {version}): {len(files.texts)} files, {len(found)} candidate lines, "
                  f"{len(chosen)} cases", file=sys.stderr)

        rows = build(per_repo=args.per_repo, seed=args.seed, dirs=site_dirs(args.site), on_repo=report)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} cases written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
