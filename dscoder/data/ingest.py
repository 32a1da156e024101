"""Repositories in: where they come from, which of their files are read, how bytes become text.

A repository is the unit of DeepSeek-Coder's data (dedup and dependency order work on whole
repositories), so ingest's first job is to say what one is: a source that is a git work tree
or a plain directory is one repository; with `split=True` every child directory of a source
is its own repository (the loose files at its top form one more), which is how a Python
stdlib or a site-packages tree becomes many packages. Git URLs are cloned shallowly.

Listing happens once, in the main process, sorted, so a build's plan (and with it every
result) is the same whatever the number of workers. Reading happens in the workers.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import UserError

# Trees no repository's own authors wrote, or that a build or an installer produced (StarCoder
# and Linguist's vendor lists, the common cases). Dot-directories (.git, .tox, .venv, .idea...)
# and packaging metadata (*.egg-info, *.dist-info: licence copies and file lists) are skipped too.
SKIPPED_DIRS = frozenset({
    "node_modules", "bower_components", "jspm_packages", "vendor", "vendors", "third_party", "third-party",
    "thirdparty", "external", "__pycache__", "venv", "env", "site-packages", "dist-packages", "build", "dist",
    "target", "out", "bin", "obj", "Pods", "Carthage", "deps", "_build", "htmlcov", "coverage",
})
# File names that are generated or vendored whatever their directory (lock files, minified and
# compiled-protocol outputs).
_GENERATED_NAME = re.compile(
    r"(\.min\.(js|css)$|-min\.js$|\.bundle\.js$|_pb2(_grpc)?\.pyi?$|\.pb\.(go|cc|h)$|\.pb-c\.[ch]$|\.generated\.\w+$"
    r"|^(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|poetry\.lock|Cargo\.lock|Gemfile\.lock|composer\.lock"
    r"|go\.sum|Pipfile\.lock)$)")
_GIT_URL = re.compile(r"^(https?://|git://|ssh://|git@|file://)|\.git$")

MAX_FILE_BYTES = 1 << 20  # 1 MiB: larger files are data or generated far more often than code
BAD_UTF8_SHARE = 0.01  # more replaced characters than this and the file is not text in UTF-8


class IngestError(UserError):
    """A source could not be read as repositories (missing path, failed clone)."""


@dataclass(frozen=True)
class Repository:
    """One unit of the corpus: a name unique in the build, a root, and its files (relative paths)."""

    name: str
    root: str
    files: tuple[str, ...]


def _skipped_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.startswith(".") or name.endswith((".egg-info", ".dist-info"))


def skipped_path(rel: str) -> str | None:
    """Why a repository-relative path is not read ("skipped_dir", "generated_name"), or None."""
    parts = rel.split("/")
    if any(_skipped_dir(p) for p in parts[:-1]):
        return "skipped_dir"
    if _GENERATED_NAME.search(parts[-1]):
        return "generated_name"
    return None


def _clone(url: str, into: Path) -> Path:
    slug = re.sub(r"[^\w.-]+", "_", re.sub(r"^\w+://|\.git$", "", url)).strip("_")
    target = into / slug
    if not (target / ".git").exists():
        into.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", url, str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            raise IngestError(f"git clone {url} failed: {done.stderr.strip()[-500:]}")
    return target


def _git_files(root: Path) -> list[str] | None:
    """The tracked files of a git work tree (which honours its .gitignore), or None if it is not one."""
    if not (root / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True)
    if done.returncode != 0:
        return None
    return sorted(p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p)


def _walk(root: Path, skip_children: bool = False) -> list[str]:
    """Regular files under root, sorted; directory symlinks are never followed, so loops cannot trap it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        if skip_children and Path(dirpath) == root:
            dirnames.clear()
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.extend(prefix + f for f in sorted(filenames))
    return found


def discover(sources: list[str], *, split: bool = False, clone_dir: Path | None = None) -> list[Repository]:
    """The repositories of a build, in a fixed order; names are made unique with a numeric suffix."""
    repos: list[Repository] = []
    taken: dict[str, int] = {}

    def add(name: str, root: Path, files: list[str]) -> None:
        n = taken.get(name, 0)
        taken[name] = n + 1
        repos.append(Repository(name if n == 0 else f"{name}-{n + 1}", str(root), tuple(files)))

    for source in sources:
        if _GIT_URL.search(source) and not Path(source).exists():
            root = _clone(source, clone_dir or Path(".dscoder-clones"))
        else:
            root = Path(source).expanduser().resolve()
            if not root.is_dir():
                raise IngestError(f"source {source} is not a directory or a git URL")
        tracked = _git_files(root)
        if tracked is not None or not split:
            add(root.name, root, tracked if tracked is not None else _walk(root))
            continue
        top = _walk(root, skip_children=True)
        if top:
            add(root.name, root, top)
        for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
            files = _git_files(child)
            files = files if files is not None else _walk(child)
            if files and not _skipped_dir(child.name):
                add(f"{root.name}/{child.name}", child, files)
    return repos


def read_text(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None, int]:
    """(text, None, size) for a readable text file, else (None, why, size).

    Invalid UTF-8 never stops a build: a file with a few bad bytes (a Latin-1 author name) is
    decoded with U+FFFD replacements and reported as "utf8_replaced"; one with more than 1%
    bad characters is not UTF-8 text and is dropped as "invalid_utf8".
    """
    try:
        if path.is_symlink() or not path.is_file():
            return None, "not_regular_file", 0
        size = path.stat().st_size
        if size > max_bytes:
            return None, "too_large", size
        data = path.read_bytes()
    except OSError:
        return None, "unreadable", 0
    if b"\0" in data[:8192]:
        return None, "binary", size
    try:
        return data.decode("utf-8"), None, size
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") > BAD_UTF8_SHARE * max(len(text), 1):
            return None, "invalid_utf8", size
        return text, "utf8_replaced", size
