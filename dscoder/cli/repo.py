"""`--repo DIR` for `dscoder complete` and `infill`: the prompt reads the repository first.

The repository is indexed once per command (`dscoder.repo.context.RepoIndex`), the context sized
to what the model's window leaves beside the cursor's file and the answer, and a line on stderr
says what went in (and what the index skipped), so a user can see the cost in prompt tokens.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import typer

from dscoder.cli.common import err

REPO = typer.Option(None, "--repo", help="A repository directory: the prompt starts with the files the cursor's "
                                         "file imports and the definitions of the names near the cursor, each "
                                         "after a #path line, sized to the context window.")


def open_repo(repo: Optional[str]):
    """The repository's index (None without --repo), made before the model loads, so that a bad
    --repo is said at once."""
    if repo is None:
        return None
    from dscoder.repo.context import RepoIndex

    return RepoIndex(repo)


def repo_prefix(index, file: Optional[str], prefix: str, suffix: str, model_window: int, reserve: int,
                count_tokens) -> str:
    """The prompt's prefix with the repository's context before the cursor's file (`file`, when inside it)."""
    from dscoder.errors import UserError
    from dscoder.repo.context import with_context

    start = time.perf_counter() - index.seconds
    path = None
    if file is not None and file != "-":
        try:
            path = index.relative(os.path.abspath(file))
        except UserError:
            err.print(f"[dim]{file} is not inside {index.root}: the context is chosen from the names near the cursor[/]")
    new_prefix, context = with_context(index, path, prefix, suffix, model_window, reserve, count_tokens)
    kinds = {k: sum(b.kind == k for b in context.blocks) for k in ("import", "definition")}
    err.print(f"[dim]repository context: {context.tokens} tokens ({kinds['import']} imported files, "
              f"{kinds['definition']} definitions; {len(context.left_out)} left out for the budget) in "
              f"{time.perf_counter() - start:.2f} s; {index.summary()}[/]")
    return new_prefix
