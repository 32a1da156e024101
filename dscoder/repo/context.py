"""The repository context of a cursor: what of the rest of a repository a completion reads first.

DeepSeek-Coder was trained on whole repositories, each file after a `#path` line and after the
files it imports (`deps`). A completion in one file of a repository is given the same layout:

    #pkg/util.py          <- a file the cursor's file imports, whole (farthest import first)
    ...
    #pkg/models.py        <- the definition of a name used near the cursor (`symbols`)
    class Config: ...
    #pkg/app.py           <- the cursor's own file, always whole and last (the caller writes it)
    ...<cursor>

What is chosen, in order, until the token budget is spent (`RepoIndex.context`):

1. definitions of the names used near the cursor (the last `window_lines` lines before it and
   the first lines after it, nearest first; after the `near_names` nearest, the names the file
   imports by name and has not used yet, which the code after the cursor is likely to use),
   found in the files the cursor's file imports
   (nearest import first), or anywhere in the repository when a name is defined in at most
   `max_ambiguous` files there (a name defined everywhere, like `run`, tells nothing);
2. the files the cursor's file imports, whole: direct imports first, then theirs, each only if
   it fits whole; a file taken whole drops the definitions already taken from it.

The blocks are then laid out as training laid them out: whole files in the import order (what
is imported before what imports it, so the direct imports come last), then the definitions.
The cursor's own file is never in the context: its text is the request's (the unsaved buffer),
and on disk it is replaced by it, so nothing after the cursor leaks in through the index.

The repository is hostile input like any other (`ingest`): files are read through `Tree`
(no link is followed out of the root), a git work tree is listed from its index only (so its
.gitignore keeps `.env` files out of prompts, and nothing it configures runs), and listing and
reading are bounded in files, bytes and seconds, what was left out named in `skipped`.
Recently edited files are not ranked higher (the import graph and the names say more about
what the cursor needs); a file modified since the last look is re-read (`refresh`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError
from dscoder.repo import deps, ingest, langid, symbols
from dscoder.settings import setting


@dataclass(frozen=True)
class ContextConfig:
    """How much of a repository is read for completion context, and how it is chosen."""

    max_files: int = setting(20_000, "Source files indexed; beyond it the files nearest the cursor's are kept "
                                     "and the rest named as skipped.")
    max_file_bytes: int = setting(512 * 1024, "Larger files are not read (generated or data, most often).")
    max_total_bytes: int = setting(64 << 20, "Bytes read in all; files past it are skipped.")
    max_seconds: float = setting(10.0, "Time allowed to list and read the repository; files not reached are "
                                       "skipped.")
    max_listed: int = setting(500_000, "Directory entries listed before the listing stops (a tree of millions).")
    window_lines: int = setting(30, "Lines before the cursor (and 5 after it) whose names are looked up.")
    near_names: int = setting(8, "Names nearest the cursor looked up before the names the file imported and "
                                 "has not used yet.")
    max_ambiguous: int = setting(3, "A name defined in more files than this, none of them imported, is not "
                                    "looked up.")
    import_depth: int = setting(3, "Import steps followed from the cursor's file.")
    max_definitions: int = setting(24, "Definitions taken at most.")


@dataclass(frozen=True)
class Block:
    """One `#path` block of the context: a whole imported file or one definition."""

    path: str
    kind: str  # "import" or "definition"
    text: str
    tokens: int
    distance: int  # import steps from the cursor's file (0 for a definition found by name elsewhere)


@dataclass
class RepoContext:
    blocks: list[Block]
    text: str
    tokens: int
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of what did not fit
    shown_prefix: str = ""  # what `#path` lines put before a repository-relative path (see RepoIndex)


@dataclass
class _File:
    path: str
    language: str
    text: str
    mtime_ns: int
    size: int
    _definitions: list[symbols.Definition] | None = None

    def definitions(self) -> list[symbols.Definition]:
        if self._definitions is None:
            self._definitions = symbols.definitions(self.path, self.language, self.text)
        return self._definitions


def block_text(path: str, text: str) -> str:
    """`#path` then the text, ending in a newline: the data pipeline's layout (`data.fim.file_block`)."""
    return f"#{ingest.printable_path(path)}\n{text}" + ("" if text.endswith("\n") else "\n")


def prompt_prefix(context: RepoContext | None, path: str | None, prefix: str) -> str:
    """What precedes the cursor in the prompt: the context, the cursor file's `#path` line (as the
    context shows paths), its prefix."""
    head = context.text if context is not None else ""
    shown = (context.shown_prefix if context is not None else "") + (path or "")
    return head + (f"#{ingest.printable_path(shown)}\n" if path else "") + prefix


class RepoIndex:
    """A repository's source files, read once (bounded) and re-read when they change on disk."""

    def __init__(self, root: str | os.PathLike, config: ContextConfig = ContextConfig()):
        given = Path(root).expanduser()
        if not given.exists():
            raise UserError(f"--repo {root}: no such directory")
        if not given.is_dir():
            raise UserError(f"--repo {root}: not a directory (give the repository's root directory)")
        self.root = Path(os.path.realpath(given))
        self.config = config
        # A root that is itself a Python package (a site-packages directory, a checkout's `src/pkg`)
        # is seen from its parent: its files are `pkg/...` to the import graph and in `#path`
        # lines, so `from pkg.models import X` resolves inside it.
        self.shown_prefix = self.root.name + "/" if (self.root / "__init__.py").is_file() else ""
        self.files: dict[str, _File] = {}
        self.skipped: list[tuple[str, str]] = []
        self.refreshed = 0.0
        self.refresh()

    # --- reading ----------------------------------------------------------------------------------

    def _listing(self, deadline: float) -> tuple[list[str], list[tuple[str, str]]]:
        tracked = ingest._git_files(self.root)
        if tracked is not None:
            return tracked
        found: list[str] = []
        problems: list[tuple[str, str]] = []
        stack, listed = [""], 0
        while stack:
            if time.monotonic() > deadline or listed > self.config.max_listed:
                problems.append((stack[-1] or ".", "listing_stopped"))
                break
            rel_dir = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, rel_dir)) as entries:
                    items = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
            except OSError:
                problems.append((rel_dir or ".", "unreadable_dir"))
                continue
            listed += len(items)
            prefix = rel_dir + "/" if rel_dir else ""
            found += [prefix + name for name, is_dir in items if not is_dir]
            stack += [prefix + name for name, is_dir in reversed(items) if is_dir and not ingest._skipped_dir(name)]
        return found, problems

    def refresh(self, near: str | None = None) -> None:
        """List the repository again and (re-)read the files that are new or changed since the last look.

        With more source files than `max_files`, the ones sharing the longest directory with
        `near` (the cursor's file) are kept."""
        cfg = self.config
        start = time.monotonic()
        deadline = start + cfg.max_seconds
        listed, problems = self._listing(deadline)
        skipped = [(p, why) for p, why in problems]
        wanted = []
        for rel in listed:
            why = ingest.skipped_path(rel)
            language = langid.identify(rel.rsplit("/", 1)[-1])
            if why is None and (language is None or not symbols.supported(language)):
                continue  # not source the context reads (data, docs, languages without rules)
            if why is not None:
                skipped.append((rel, why))
            else:
                wanted.append((rel, language))
        if len(wanted) > cfg.max_files:
            here = tuple((near or "").split("/")[:-1])
            wanted.sort(key=lambda f: (-_shared(here, f[0]), f[0].count("/"), f[0]))
            skipped += [(rel, "over_max_files") for rel, _ in wanted[cfg.max_files:]]
            wanted = wanted[:cfg.max_files]
        files: dict[str, _File] = {}
        total = 0
        with ingest.Tree(str(self.root)) as tree:
            for n, (rel, language) in enumerate(wanted):
                if time.monotonic() > deadline:
                    skipped += [(r, "time_limit") for r, _ in wanted[n:]]
                    break
                st, why = tree.lstat(rel)
                if st is None:
                    skipped.append((rel, why))
                    continue
                old = self.files.get(rel)
                if old is not None and (old.mtime_ns, old.size) == (st.st_mtime_ns, st.st_size):
                    files[rel] = old
                    total += old.size
                    continue
                if st.st_size > cfg.max_file_bytes:
                    skipped.append((rel, "too_large"))
                    continue
                if total + st.st_size > cfg.max_total_bytes:
                    skipped.append((rel, "over_max_total_bytes"))
                    continue
                got = tree.read(rel, cfg.max_file_bytes)
                if got.text is None:
                    skipped.append((rel, got.why or "unreadable"))
                    continue
                total += got.read
                files[rel] = _File(rel, language, got.text, st.st_mtime_ns, st.st_size)
        self.files, self.skipped = files, skipped
        self.refreshed = time.monotonic()
        self.seconds = self.refreshed - start  # what the last refresh took, for the user's report line
        self._by_name: dict[str, list[symbols.Definition]] | None = None

    def summary(self) -> str:
        """One line: what was indexed and what was skipped, by reason."""
        reasons: dict[str, int] = {}
        for _, why in self.skipped:
            reasons[why] = reasons.get(why, 0) + 1
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        return f"{len(self.files)} source files indexed" + (f"; skipped: {skipped}" if skipped else "")

    # --- choosing -----------------------------------------------------------------------------------

    def _definitions_by_name(self) -> dict[str, list[symbols.Definition]]:
        if self._by_name is None:
            index: dict[str, list[symbols.Definition]] = {}
            for f in self.files.values():
                for d in f.definitions():
                    index.setdefault(d.name, []).append(d)
            self._by_name = index
        return self._by_name

    def relative(self, path: str | os.PathLike | None) -> str | None:
        """`path` as a repository-relative path: a path inside the root as given or resolved, or a
        relative one taken as it stands; None for None. A path outside the root, or one that climbs
        out with `..`, is refused."""
        if path is None:
            return None
        text = os.fspath(path)
        if os.path.isabs(text):
            for candidate in (os.path.abspath(text), os.path.realpath(text)):
                if candidate == str(self.root) or candidate.startswith(str(self.root) + os.sep):
                    return os.path.relpath(candidate, self.root).replace(os.sep, "/")
            raise UserError(f"{text} is not inside the repository {self.root}")
        parts = text.replace("\\", "/").split("/")
        if any(p == ".." for p in parts) or "\0" in text:
            raise UserError(f"{text!r}: a path inside the repository may not climb out of it with '..'")
        return "/".join(p for p in parts if p not in ("", "."))

    def context(self, path: str | None, prefix: str, suffix: str, budget_tokens: int,
                count_tokens: Callable[[str], int]) -> RepoContext:
        """The context for a cursor between `prefix` and `suffix` of the file `path` (relative to the
        root; None when the buffer has no file), at most `budget_tokens` tokens as `count_tokens` counts."""
        cfg = self.config
        path = self.relative(path)
        cursor_text = prefix + suffix
        language = langid.identify((path or "buffer.py").rsplit("/", 1)[-1]) or ""
        names = [d for d in self.files if d != path]
        shown = self.shown_prefix
        table = [(shown + p, self.files[p].language, self.files[p].text) for p in names]
        table.append((shown + (path or "__cursor__"), language, cursor_text))
        distance = {names[i]: d for i, d in deps.imported(table, len(table) - 1, cfg.import_depth).items()}

        window = "\n".join(prefix.split("\n")[-cfg.window_lines:]) + "\n" + "\n".join(suffix.split("\n")[:5])
        own = {d.name for d in symbols.definitions(path or "", language, cursor_text)}
        own |= symbols.bound_names(cursor_text)
        by_name = self._definitions_by_name()
        chosen: list[Block] = []
        left_out: list[tuple[str, str]] = []
        spent = 0
        for name in _names_to_look_up(window, prefix, cfg.near_names):
            if len(chosen) >= cfg.max_definitions:
                break
            if name in own or name not in by_name:
                continue
            found = [d for d in by_name[name] if d.path != path]
            imported = sorted((d for d in found if d.path in distance), key=lambda d: (distance[d.path], d.kind == "method"))
            if imported:
                pick = imported[0]
            elif 0 < len({d.path for d in found}) <= cfg.max_ambiguous and (top := [d for d in found if d.kind != "method"]):
                # found by name alone: a method of some class is too weak a match to show
                pick = min(top, key=lambda d: (-_shared(_dir(path), d.path), d.path))
            else:
                continue
            if any(b.path == pick.path and pick.text in b.text for b in chosen):
                continue
            text = block_text(shown + pick.path, pick.text)
            tokens = count_tokens(text)
            if spent + tokens > budget_tokens:
                left_out.append((f"{pick.path}:{pick.line}", "budget"))
                continue
            chosen.append(Block(pick.path, "definition", text, tokens, distance.get(pick.path, 0)))
            spent += tokens

        whole: list[Block] = []
        for rel in sorted(distance, key=lambda p: (distance[p], p)):
            text = block_text(shown + rel, self.files[rel].text)
            freed = sum(b.tokens for b in chosen if b.path == rel)
            tokens = count_tokens(text)
            if spent - freed + tokens > budget_tokens:
                left_out.append((rel, "budget"))
                continue
            chosen = [b for b in chosen if b.path != rel]
            spent += tokens - freed
            whole.append(Block(rel, "import", text, tokens, distance[rel]))

        # Laid out as in training: imports before what imports them (farthest first), definitions last.
        whole.sort(key=lambda b: (-b.distance, b.path))
        blocks = whole + chosen
        return RepoContext(blocks, "".join(b.text for b in blocks), spent, left_out, shown)


def with_context(index: RepoIndex, path: str | None, prefix: str, suffix: str, context_window: int,
                 reserve_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, RepoContext]:
    """(the prefix to prompt with, the context chosen): the repository context sized to what the
    context window leaves beside the cursor's file and `reserve_tokens` (the answer's tokens and
    the FIM tokens). The cursor's file is kept whole: when it alone fills the window the context
    is empty, and the prompt is the file's, as without a repository."""
    own = count_tokens(prompt_prefix(None, index.relative(path), prefix) + suffix)
    budget = max(0, context_window - reserve_tokens - own - 8)
    context = index.context(path, prefix, suffix, budget, count_tokens)
    return prompt_prefix(context, index.relative(path), prefix), context


def _names_to_look_up(window: str, prefix: str, near: int) -> list[str]:
    """The names whose definitions are worth showing, best first: the `near` names nearest the
    cursor, then the names the file imports by name and has not used yet (code goes on to use
    what it imported: the next lines are likely where), then the other names near the cursor."""
    close = symbols.identifiers(window)
    return list(dict.fromkeys(close[:near] + symbols.unused_imports(prefix) + close[near:]))


def _dir(path: str | None) -> tuple[str, ...]:
    return tuple((path or "").split("/")[:-1])


def _shared(here: tuple[str, ...], other: str) -> int:
    n = 0
    for a, b in zip(here, other.split("/")[:-1]):
        if a != b:
            break
        n += 1
    return n
