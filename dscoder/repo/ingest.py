"""Repositories in: where they come from, which of their files are read, how bytes become text.

A repository is the unit of DeepSeek-Coder's data (dedup and dependency order work on whole
repositories), so ingest's first job is to say what one is: a source that is a git work tree
or a plain directory is one repository; with `split=True` every child directory of a source
is its own repository (the loose files at its top form one more), which is how a Python
stdlib or a site-packages tree becomes many packages. Git URLs are cloned shallowly.

Listing happens once, in the main process, sorted, so a build's plan (and with it every
result) is the same whatever the number of workers. Reading happens in the workers.

The trees are other people's, so two rules hold whatever a tree holds:

* **Nothing is read from outside the repository's root.** Every listed path is opened one
  component at a time from the root's directory descriptor with `O_NOFOLLOW` (directories as
  `O_PATH`), so no symbolic link is ever followed, not even one swapped in between a check and
  the read: the kernel refuses it at open time. A path that runs through a link is not read and
  is counted by reason: `symlink_outside_root` when the link resolves outside the root,
  `symlink_in_root` when it stays inside (its target is read once, under its own path, when
  listed). See `Tree`.
* **Nothing the tree configures is run.** A git work tree is listed by `git ls-files` against
  its index file only: git is pointed (`GIT_DIR`) at an empty git directory this process made,
  with `GIT_INDEX_FILE` naming the tree's index, so git never reads the tree's `.git/config`
  (with its includes), hooks, attributes, filters or fsmonitor; the user's global and system
  config are off too. See `_git_files`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import tempfile
import unicodedata
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
# Benchmark files that must never become training data: MultiPL-E's translations (BSD-3 with a
# clause forbidding their use as ML training data) as DeepSeek-Coder and nuprl/MultiPL-E name
# them (humaneval-lua.jsonl, mbpp-rb-reworded.json, ...), and the other humaneval-*.jsonl
# beside them (evaluation data, whatever its licence), should a source tree hold a copy.
_EVALUATION_ONLY = re.compile(r"^(humaneval|mbpp)-[\w.+-]+\.jsonl?(\.gz)?$", re.I)
_GIT_URL = re.compile(r"^(https?://|git://|ssh://|git@|file://)|\.git$")

MAX_FILE_BYTES = 1 << 20  # 1 MiB: larger files are data or generated far more often than code
BAD_UTF8_SHARE = 0.01  # more replaced characters than this and the file is not text in UTF-8
GIT_TIMEOUT = 600  # seconds for one `git ls-files` / `git config`; a FIFO planted as the index must not hang a build


class IngestError(UserError):
    """A source could not be read as repositories (missing path, failed clone, no git for a git tree)."""


@dataclass(frozen=True)
class Repository:
    """One unit of the corpus: a name unique in the build, a root, its files (relative paths), and
    what listing it found but will not read, as (relative path, reason) pairs."""

    name: str
    root: str
    files: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def printable_path(path: str) -> str:
    """A path as one line of text: what a `#path` header, dropped.jsonl and the manifest show.

    File names are bytes; only `/` and NUL are excluded. A name's bytes that are not UTF-8
    (held as surrogate escapes, as `os.fsdecode` and git's `-z` output decoded with
    "surrogateescape" give them) become `\\xNN`, the byte; ASCII control characters (newline,
    tab, ESC...) become `\\xNN` too; other control, surrogate and line/paragraph-separator code
    points become `\\uNNNN`; a backslash becomes `\\\\`. So a newline in a name cannot start a fake
    header line, the result always encodes as UTF-8, and distinct names stay distinct.
    """
    if path.isprintable() and "\\" not in path:
        return path
    out = []
    for ch in path:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte >= 0x80 that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _skipped_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.startswith(".") or name.endswith((".egg-info", ".dist-info"))


def skipped_path(rel: str) -> str | None:
    """Why a repository-relative path is not read ("skipped_dir", "generated_name",
    "evaluation_only"), or None."""
    parts = rel.split("/")
    if any(_skipped_dir(p) for p in parts[:-1]):
        return "skipped_dir"
    if _GENERATED_NAME.search(parts[-1]):
        return "generated_name"
    if _EVALUATION_ONLY.match(parts[-1]):
        return "evaluation_only"
    return None


# ---- git: listed and cloned without running anything a repository configures -----------------

def _git_env(home: str, **extra: str) -> dict[str, str]:
    """An environment in which git reads no system, global or XDG config and prompts for nothing.

    Only PATH is kept from ours: GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_EXEC_PATH and the like
    could point git anywhere."""
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": home, "XDG_CONFIG_HOME": home, "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_NO_REPLACE_OBJECTS": "1", **extra}


# Belt and braces: git reads no repository config in `_git_files`, but should it ever, the command
# line outranks every config file (and include) for these keys.
_GIT_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false")


def _small_text(path: Path) -> str | None:
    """The text of a small regular file (a `.git` file, `commondir`), never following a last-component link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(4096).decode("utf-8", "surrogateescape")


def _git_dir(root: Path) -> Path | None:
    """The git directory of a work tree: `.git` itself, or where a `.git` file (a linked worktree,
    a submodule checkout) points. Only its index and `extensions.objectformat` are read from it."""
    dot = root / ".git"
    try:
        mode = os.lstat(dot).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return Path(os.path.realpath(dot))
    text = _small_text(dot) if stat.S_ISREG(mode) else None
    found = re.match(r"gitdir: *(.+)", text or "")
    return Path(os.path.realpath(root / found.group(1).strip())) if found else None


def _object_format(git_dir: Path, env: dict[str, str]) -> str:
    """sha1 or sha256: the one setting of the repository's config git needs to parse its index.

    Read with `git config --file ... --no-includes`, which parses that one file and runs nothing."""
    common = _small_text(git_dir / "commondir")
    config = (git_dir / common.strip() if common else git_dir) / "config"
    try:
        if not stat.S_ISREG(os.stat(config).st_mode):
            return "sha1"
    except OSError:
        return "sha1"
    done = subprocess.run(["git", *_GIT_SAFE, "config", "--file", str(config), "--no-includes", "--get",
                           "extensions.objectformat"], capture_output=True, env=env, timeout=GIT_TIMEOUT)
    return done.stdout.decode("ascii", "replace").strip().lower() or "sha1"


def _git_files(root: Path) -> tuple[list[str], list[tuple[str, str]]] | None:
    """(tracked files, problems) of a git work tree, or None if `root` is not one.

    The tracked files are the entries of the tree's index (so its .gitignore is honoured), as
    `git ls-files` reads them; git, not this module, parses the index, since it is the reference
    for every index version, split and SHA-256 indexes. But git runs against an empty git
    directory made here (`GIT_DIR`), with `GIT_INDEX_FILE` the tree's index and `GIT_WORK_TREE`
    the tree: the repository's own config (core.fsmonitor, include.path, filters, textconv,
    core.sshCommand, aliases...) and hooks are never read, so none of them can run. Only
    `extensions.objectformat` is taken from the config (see `_object_format`), for a SHA-256
    repository's index. A tree whose index git cannot list is reported as `git_listing_failed`
    and none of its files are read: a walk would read what its .gitignore keeps out (.env files).
    """
    git_dir = _git_dir(root)
    if git_dir is None:
        return None
    failed = ([], [(".git", "git_listing_failed")])
    index = git_dir / "index"
    try:
        if not stat.S_ISREG(os.stat(index).st_mode):
            return failed
    except FileNotFoundError:
        return [], []  # a repository with nothing added yet
    except OSError:
        return failed
    with tempfile.TemporaryDirectory(prefix="dscoder-git-") as scratch:
        home, fake = Path(scratch, "home"), Path(scratch, "git")
        home.mkdir()
        for sub in ("objects", "refs"):
            (fake / sub).mkdir(parents=True)
        (fake / "HEAD").write_text("ref: refs/heads/main\n")
        env = _git_env(str(home), GIT_DIR=str(fake))
        try:
            object_format = _object_format(git_dir, env)
            if object_format not in ("sha1", "sha256"):
                return failed
            (fake / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = false\n" if object_format == "sha1"
                                         else "[core]\n\trepositoryformatversion = 1\n\tbare = false\n"
                                              "[extensions]\n\tobjectformat = sha256\n")
            done = subprocess.run(["git", "--no-pager", *_GIT_SAFE, "ls-files", "-z"], capture_output=True,
                                  cwd=scratch, timeout=GIT_TIMEOUT,
                                  env={**env, "GIT_WORK_TREE": str(root), "GIT_INDEX_FILE": str(index)})
        except FileNotFoundError:
            raise IngestError(f"{root} is a git work tree, and git is needed to list it (its index says which "
                              f"files are tracked); install git") from None
        except subprocess.TimeoutExpired:
            return failed
    if done.returncode != 0:
        return failed
    return sorted({p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p}), []


# Variables that would point a clone at another repository, index or object store than the new one.
_GIT_REPOSITORY_ENV = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                                 "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
                                 "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT"})


def _clone(url: str, into: Path) -> Path:
    """A shallow clone of `url` in `into`, made once and reused by a resumed build.

    The user's git config and environment are honoured (credentials, proxies, GIT_SSH_COMMAND),
    less the variables that would point git at another repository; but no template is copied and no
    hook runs (`--template=`, `core.hooksPath=/dev/null`), git-lfs does not download, the `ext::`
    transport is refused, and `--` keeps a URL from being read as an option. Whatever sits at
    the clone's place as a symbolic link (planted in a shared output directory) is removed, not
    followed."""
    slug = re.sub(r"[^\w.-]+", "_", re.sub(r"^\w+://|\.git$", "", url)).strip("_.") or "repository"
    target = into / slug
    into.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    if not (target / ".git").is_dir() or (target / ".git").is_symlink():
        env = {k: v for k, v in os.environ.items() if k not in _GIT_REPOSITORY_ENV}
        env.update(GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1")
        done = subprocess.run(["git", *_GIT_SAFE, "-c", "protocol.ext.allow=never", "clone", "--quiet", "--depth", "1",
                               "--template=", "--", url, str(target)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise IngestError(f"git clone {url} failed: {done.stderr.strip()[-500:]}")
    return Path(os.path.realpath(target))


# ---- plain trees ------------------------------------------------------------------------------

def _walk(root: Path, top_only: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """(entries, problems) under root: every non-directory (regular files, and links, FIFOs...: the
    plan says which are read), directories first-level sorted, in the order os.walk gives.

    An explicit stack, not os.walk: os.walk recurses (one generator frame per level) and a tree
    1,200 directories deep raised RecursionError. Directory links are listed, never entered."""
    found: list[str] = []
    problems: list[tuple[str, str]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir)) as listing:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing)
        except OSError:
            problems.append((rel_dir, "unreadable_dir"))
            continue
        prefix = rel_dir + "/" if rel_dir else ""
        found.extend(prefix + name for name, is_dir in entries if not is_dir)
        if not (top_only and rel_dir == ""):
            stack.extend(prefix + name for name, is_dir in reversed(entries) if is_dir)
    return found, problems


def discover(sources: list[str], *, split: bool = False, clone_dir: Path | None = None) -> list[Repository]:
    """The repositories of a build, in a fixed order; names are made unique with a numeric suffix.

    Roots are resolved (every link in them followed: the user named them); what lies under a
    root is listed without following any link. A child of a `split` source that is a link is
    not a repository: it is listed as an entry of the top one, where the plan refuses it."""
    repos: list[Repository] = []
    taken: dict[str, int] = {}

    def add(name: str, root: Path, files: list[str], skipped: list[tuple[str, str]] = ()) -> None:
        name = printable_path(name)
        n = taken.get(name, 0)
        taken[name] = n + 1
        repos.append(Repository(name if n == 0 else f"{name}-{n + 1}", str(root), tuple(files), tuple(skipped)))

    def listing(root: Path, top_only: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
        tracked = _git_files(root)
        return tracked if tracked is not None else _walk(root, top_only)

    for source in sources:
        if _GIT_URL.search(source) and not Path(source).exists():
            root = _clone(source, clone_dir or Path(".dscoder-clones"))
        else:
            root = Path(source).expanduser().resolve()
            if not root.is_dir():
                raise IngestError(f"source {source} is not a directory or a git URL")
        if not split or _git_dir(root) is not None:
            add(root.name, root, *listing(root))
            continue
        top, problems = _walk(root, top_only=True)  # a child that is a link is listed here, and not read
        if top or problems:
            add(root.name, root, top, problems)
        for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
            files, problems = listing(child)
            if (files or problems) and not _skipped_dir(child.name):
                add(f"{root.name}/{child.name}", child, files, problems)
    return repos


# ---- reading: inside the root only --------------------------------------------------------------

# O_PATH: a directory with search but no read permission can still be walked through.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in for a file returns at once (then fstat refuses it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Read:
    """What reading one file gave: its text (None when not read or not text), the drop reason (or a
    note such as "utf8_replaced" beside a text), its size as listed, and the bytes actually read."""

    text: str | None
    why: str | None
    size: int
    read: int


class Tree:
    """A repository root, opened for reading only what lies inside it.

    The root is resolved once, then opened component by component from `/` with O_NOFOLLOW,
    so a root swapped for a link after planning is refused too. A file is reached from the
    root's descriptor one directory at a time with `openat(O_NOFOLLOW)` and opened with
    O_NOFOLLOW: the check is the open itself, so a link swapped in between a check and the
    read cannot be followed (no window, no /proc needed). Then fstat must show the same
    regular file lstat saw. The last directory's descriptor is kept, since a part's files come
    sorted by directory. Hard links are not detected: a hard link is the same file, and the
    kernel (fs.protected_hardlinks) keeps a tree's author from linking files they cannot read.
    """

    def __init__(self, root: str) -> None:
        self.given = root
        self.root = os.path.realpath(root)
        self._prefix = self.root.rstrip("/") + "/"
        self._root_fd: int | None = None
        self._dir: tuple[tuple[str, ...], int] | None = None

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._dir is not None:
            os.close(self._dir[1])
            self._dir = None
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def link_reason(self, rel: str) -> str:
        """symlink_in_root or symlink_outside_root, for a path that runs through a link.

        Only a label: the path is resolved to say where the link leads, never to read it."""
        target = os.path.realpath(os.path.join(self.root, rel))
        return "symlink_in_root" if target == self.root or target.startswith(self._prefix) else "symlink_outside_root"

    def _open_root(self) -> int:
        if self._root_fd is None:
            fd = os.open("/", _DIR_FLAGS)
            try:
                for part in self.root.strip("/").split("/"):
                    if part:
                        fd, old = os.open(part, _DIR_FLAGS, dir_fd=fd), fd
                        os.close(old)
            except OSError:
                os.close(fd)
                raise _Refused("unreadable") from None
            self._root_fd = fd
        return self._root_fd

    def _blocked(self, name: str, dir_fd: int, rel: str, err: OSError) -> _Refused:
        """Why a component could not be opened: a link (by where it leads), missing, or unreadable."""
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISLNK(mode):
            return _Refused(self.link_reason(rel))
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return _Refused("missing")
        return _Refused("unreadable")

    def _parent(self, rel: str) -> tuple[int, str]:
        """(descriptor of the file's directory, file name), every directory entered without following links."""
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in rel:
            raise _Refused("outside_root")
        dirs = tuple(parts[:-1])
        if self._dir is not None and self._dir[0] == dirs:
            return self._dir[1], parts[-1]
        fd = os.dup(self._open_root())
        try:
            for i, part in enumerate(dirs):
                try:
                    fd, old = os.open(part, _DIR_FLAGS, dir_fd=fd), fd
                except OSError as e:
                    raise self._blocked(part, fd, "/".join(parts[:i + 1]), e) from None
                os.close(old)
        except BaseException:
            os.close(fd)
            raise
        if self._dir is not None:
            os.close(self._dir[1])
        self._dir = (dirs, fd)
        return fd, parts[-1]

    def _lstat(self, rel: str) -> tuple[int, str, os.stat_result]:
        dir_fd, name = self._parent(rel)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as e:
            raise self._blocked(name, dir_fd, rel, e) from None
        if stat.S_ISLNK(st.st_mode):
            raise _Refused(self.link_reason(rel))
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not_regular_file")
        return dir_fd, name, st

    def lstat(self, rel: str) -> tuple[os.stat_result | None, str | None]:
        """(the regular file's stat, None), or (None, why not): the checks `read` makes, reading nothing."""
        try:
            return self._lstat(rel)[2], None
        except _Refused as r:
            return None, r.reason

    def check(self, rel: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[int, str | None]:
        """(size, None) for a file the scan will read, else (size or 0, reason); reads nothing."""
        try:
            st = self._lstat(rel)[2]
        except _Refused as r:
            return 0, r.reason
        return st.st_size, ("too_large" if st.st_size > max_bytes else None)

    def read(self, rel: str, max_bytes: int = MAX_FILE_BYTES) -> Read:
        """The text of `rel` (a path relative to the root, `/`-separated), or why not.

        Invalid UTF-8 never stops a build: a file with a few bad bytes (a Latin-1 author name)
        is decoded with U+FFFD replacements and reported as "utf8_replaced"; one with more than
        1% bad characters is not UTF-8 text and is dropped as "invalid_utf8"."""
        try:
            dir_fd, name, st = self._lstat(rel)
            if st.st_size > max_bytes:
                return Read(None, "too_large", st.st_size, 0)
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                raise self._blocked(name, dir_fd, rel, e) from None
            with os.fdopen(fd, "rb") as f:
                now = os.fstat(fd)
                if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    return Read(None, "changed_while_read", st.st_size, 0)
                data = f.read(max_bytes + 1)  # the limit holds for a file that grew since lstat
        except _Refused as r:
            return Read(None, r.reason, 0, 0)
        except OSError:
            return Read(None, "unreadable", 0, 0)
        size = max(st.st_size, len(data))
        if len(data) > max_bytes:
            return Read(None, "too_large", size, len(data))
        if b"\0" in data[:8192]:
            return Read(None, "binary", size, len(data))
        try:
            return Read(data.decode("utf-8"), None, size, len(data))
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            if text.count("\ufffd") > BAD_UTF8_SHARE * max(len(text), 1):
                return Read(None, "invalid_utf8", size, len(data))
            return Read(text, "utf8_replaced", size, len(data))


class Trees:
    """The files of many repositories, one `Tree` open at a time: a plan's files come grouped by
    repository, and keeping every root open would run out of descriptors on a site-packages."""

    def __init__(self) -> None:
        self._tree: Tree | None = None

    def __enter__(self) -> Trees:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tree is not None:
            self._tree.close()
            self._tree = None

    def tree(self, root: str) -> Tree:
        if self._tree is None or self._tree.given != root:
            self.close()
            self._tree = Tree(root)
        return self._tree

    def read(self, root: str, rel: str, max_bytes: int = MAX_FILE_BYTES) -> Read:
        return self.tree(root).read(rel, max_bytes)

    def check(self, root: str, rel: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[int, str | None]:
        return self.tree(root).check(rel, max_bytes)


def read_text(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None, int]:
    """(text, None or a note, size) for a readable text file, else (None, why, size): `Tree.read`
    of one file, its directory taken as the root (so a link as the file itself is refused)."""
    with Tree(str(Path(path).parent)) as tree:
        got = tree.read(Path(path).name, max_bytes)
    return got.text, got.why, got.size
