"""Finding a benchmark data file, and downloading it (checked, then cached) when it is nowhere here.

A data file is looked for, in this order:
1. the folder given by `--data DIR` or `$DSCODER_DATA`: when one is named, it is the only place
   looked (a typo in it must not quietly evaluate other data);
2. `../shared/data` beside a source checkout (`DSCODER_CHECKOUT_DATA=0` hides it, to see what a
   pip-installed user sees);
3. the download cache, `$DSCODER_CACHE/data`, else `$XDG_CACHE_HOME/dscoder/data`, else
   `~/.cache/dscoder/data` (the cache-dir rule of the native kernels), where a file counts only if
   its SHA-256 is the table's (`dscoder.tasks.sources`);
4. downloaded into that cache from the table's pinned URL, unless offline: `DSCODER_OFFLINE` or
   `HF_HUB_OFFLINE` set to 1/true/yes/on (the same rule as model downloads, `dscoder.hub`).

A download goes to a temporary file beside its target; its size and SHA-256 are checked before it
is renamed into place (an atomic rename), and a file that does not match is deleted and refused,
naming the file, the expected and the actual hash. A server is never trusted to end the stream:
nothing past the expected size is read. `DSCODER_DATA_URL=BASE` fetches every file from BASE +
its relative path instead (a mirror, or a test's local server); the hashes still decide.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dscoder import cache
from dscoder.errors import UserError
from dscoder.tasks.sources import SOURCES, Source, for_benchmarks, source_of

TIMEOUT = 60.0  # seconds without a byte before a download is given up
LARGE = 1 << 20  # files at least this big show a progress bar (on a terminal)
CHUNK = 1 << 16
WAYS_OUT = ("run `dscoder eval fetch {bench}` where the network is reachable, pass --data DIR, or set "
            "DSCODER_DATA=DIR (a folder laid out like the project's shared/data)")


class FetchError(UserError):
    """A data file could not be downloaded (network, HTTP status, offline). `results` holds the
    per-file outcome when it comes from `fetch`."""

    def __init__(self, message: str, results: list[Fetched] | None = None):
        super().__init__(message)
        self.results = results or []


class Refused(FetchError):
    """A download whose bytes are not the table's: deleted, never used."""


@dataclass
class Fetched:
    source: Source
    status: str  # cached, downloaded, refused, failed, not pinned
    path: Path | None = None
    error: str = ""


def _on(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """The download cache: $DSCODER_CACHE/data, else $XDG_CACHE_HOME/dscoder/data, else ~/.cache/dscoder/data."""
    return cache.cache_dir("data")


def explicit_dir(data: Path | None = None) -> Path | None:
    """The folder the user named: --data, else $DSCODER_DATA, else None."""
    if data is not None:
        return Path(data)
    env = os.environ.get("DSCODER_DATA")
    return Path(env) if env else None


def checkout_dir() -> Path | None:
    """../shared/data beside a source checkout, unless DSCODER_CHECKOUT_DATA=0 hides it."""
    if not _on("DSCODER_CHECKOUT_DATA", True):
        return None
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def offline() -> str | None:
    """The variable that forbids downloads now, or None (read at each call)."""
    from dscoder.hub import offline as hub_offline  # one rule for models and data

    return hub_offline()


def url_of(source: Source) -> str | None:
    """Where `source` is downloaded from: $DSCODER_DATA_URL + its path when set, else its pinned URL."""
    base = os.environ.get("DSCODER_DATA_URL")
    if base:
        return base.rstrip("/") + "/" + source.path
    return source.url


def sha256_of(path: Path) -> str:
    return cache.sha256_file(path)


def cached(source: Source) -> Path | None:
    """The cached copy of `source` when its size and SHA-256 are right, else None."""
    path = cache_dir() / source.path
    try:
        if path.stat().st_size != source.size:
            return None
    except OSError:
        return None
    return path if sha256_of(path) == source.sha256 else None


@contextlib.contextmanager
def _progress(source: Source, show: bool | None) -> Iterator:
    """A callback taking the bytes received so far: a rich progress bar on stderr for large files."""
    if show is None:
        show = source.size >= LARGE and sys.stderr.isatty()
    if not show:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(source.path, total=source.size)
        yield lambda done: bar.update(task, completed=done)


def download(source: Source, *, timeout: float = TIMEOUT, progress: bool | None = None) -> Path:
    """Download `source` into the cache and return its path; raises Refused (bytes not the table's)
    or FetchError (no URL, offline, network, HTTP status). Nothing is left behind on failure."""
    url = url_of(source)
    if url is None:
        raise FetchError(f"{source.path} has no pinned public URL ({source.origin}); pass --data DIR or set "
                         f"DSCODER_DATA=DIR, or serve a folder laid out like shared/data and set DSCODER_DATA_URL")
    why = offline()
    if why:
        raise FetchError(f"{source.path} was not downloaded from {url}: {why} is set (offline)")
    target = cache_dir() / source.path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temporary = Path(name)
    try:
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f, _progress(source, progress) as advance:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    # Read one byte past the expected size at most: a server that sends more is refused
                    # without being read to its end.
                    while chunk := response.read(min(CHUNK, source.size + 1 - received)):
                        received += len(chunk)
                        if received > source.size:
                            raise Refused(f"refused {source.path} from {url}: the server sent more than the "
                                          f"expected {source.size} bytes (expected sha256 {source.sha256}); "
                                          f"nothing was kept")
                        digest.update(chunk)
                        f.write(chunk)
                        advance(received)
            except urllib.error.HTTPError as e:
                raise FetchError(f"could not download {source.path} from {url}: HTTP {e.code} {e.reason}") from None
            except http.client.IncompleteRead:
                pass  # reported below with the byte count
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e
                raise FetchError(f"could not download {source.path} from {url}: {type(e).__name__}: {reason}") \
                    from None
        if received < source.size:  # cut short (a dropped connection, a server that stopped): retrying may help
            raise FetchError(f"could not download {source.path} from {url}: the transfer ended after {received} of "
                             f"{source.size} bytes; nothing was kept")
        actual = digest.hexdigest()
        if actual != source.sha256:
            raise Refused(f"refused {source.path} from {url}: sha256 {actual}, expected {source.sha256} "
                          f"({source.size} bytes both); nothing was kept")
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        return target
    finally:
        temporary.unlink(missing_ok=True)


def locate(relative: str, data: Path | None = None) -> Path:
    """The path of a data file (relative to the data folder), found or downloaded as the module says."""
    named = explicit_dir(data)
    if named is not None:
        path = named / relative
        if path.exists():
            return path
        raise FileNotFoundError(f"benchmark data {path} not found: {named} (from --data or DSCODER_DATA) has no "
                                f"{relative}; without --data and DSCODER_DATA it is looked for beside the checkout, "
                                f"then in the download cache {cache_dir()}")
    checkout = checkout_dir()
    if checkout is not None and (checkout / relative).exists():
        return checkout / relative
    source = source_of(relative)
    if source is None:
        raise FileNotFoundError(f"benchmark data {relative} not found (no --data or DSCODER_DATA, not in "
                                f"{checkout or '../shared/data (hidden by DSCODER_CHECKOUT_DATA=0)'}, and no "
                                f"download is listed for it); pass --data DIR or set DSCODER_DATA")
    path = cached(source)
    if path is not None:
        return path
    ways_out = WAYS_OUT.format(bench=source.benchmarks[0])
    url = url_of(source)
    if url is None:
        raise FileNotFoundError(f"benchmark data {relative} not found, and it has no pinned public URL to download "
                                f"it from; pass --data DIR or set DSCODER_DATA=DIR (a folder laid out like the "
                                f"project's shared/data), or serve such a folder and set DSCODER_DATA_URL")
    why = offline()
    if why:
        raise FileNotFoundError(f"benchmark data {relative} not found here and {why} is set, so it was not "
                                f"downloaded from {url}; {ways_out}")
    try:
        return download(source)
    except Refused:
        raise
    except FetchError as e:
        raise FileNotFoundError(f"benchmark data {relative} not found here, and the download failed: {e}; "
                                f"{ways_out}") from None


def fetch(benchmarks: list[str] | tuple[str, ...] | None = None, force: bool = False, *,
          timeout: float = TIMEOUT, progress: bool | None = None) -> list[Fetched]:
    """Fill the cache with the files of `benchmarks` (all for None): a file already cached with the right
    hash is not downloaded again unless `force`. Every file is tried; then, if any was refused or failed,
    raises Refused (any refused) or FetchError with every message and the per-file results."""
    results = []
    for source in for_benchmarks(benchmarks):
        path = None if force else cached(source)
        if path is not None:
            results.append(Fetched(source, "cached", path))
        elif url_of(source) is None:
            results.append(Fetched(source, "not pinned", error=f"{source.path}: {source.origin}"))
        else:
            try:
                results.append(Fetched(source, "downloaded", download(source, timeout=timeout, progress=progress)))
            except Refused as e:
                results.append(Fetched(source, "refused", error=str(e)))
            except FetchError as e:
                results.append(Fetched(source, "failed", error=str(e)))
    bad = [r for r in results if r.status in ("refused", "failed")]
    if bad:
        kind = Refused if any(r.status == "refused" for r in bad) else FetchError
        hint = ("\nwithout network access: pass --data DIR or set DSCODER_DATA=DIR (a folder laid out like the "
                "project's shared/data), or set DSCODER_DATA_URL to a mirror of one"
                if any(r.status == "failed" for r in bad) else "")
        raise kind("\n".join(r.error for r in bad) + hint, results)
    return results


def status(source: Source, data: Path | None = None) -> str:
    """Where `source` would be read from now, without downloading: data, checkout, cache or missing."""
    named = explicit_dir(data)
    if named is not None:
        return f"in {named}" if (named / source.path).exists() else f"missing from {named}"
    checkout = checkout_dir()
    if checkout is not None and (checkout / source.path).exists():
        return "in ../shared/data"
    if cached(source) is not None:
        return "cached"
    return "not pinned" if url_of(source) is None else "to download"


__all__ = ["SOURCES", "Fetched", "FetchError", "Refused", "cache_dir", "cached", "download", "fetch", "for_benchmarks",
           "locate", "status", "url_of"]
