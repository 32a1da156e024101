"""Where dscoder keeps what it can compute or download again, and the hash that names it.

One rule for every cache (compiled kernels, downloaded benchmark data, EvalPlus's expected
outputs): $DSCODER_CACHE, else $XDG_CACHE_HOME/dscoder, else ~/.cache/dscoder, read at each
call so that a test or a user setting the variable later is obeyed. Nothing here imports from
dscoder: it sits at the bottom of the layers beside `files`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 16  # bytes read at a time when hashing a file


def cache_dir(*parts: str) -> Path:
    """The cache root (see the module), joined with `parts`: `cache_dir("data")`."""
    root = os.environ.get("DSCODER_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dscoder"
    return base.joinpath(*parts)


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256 (hex), read in chunks: benchmark files are megabytes, models gigabytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
