"""Files and directories that a crash leaves old or new, never torn.

Everything dscoder writes for later use (converted models, checkpoints, eval results, data
shards and manifests) goes through here, so that a kill at any moment (SIGKILL, a lost
machine, a full disk) leaves either what was there before or the complete new thing:

- `write_atomic(path, data)`: one file, bytes or text.
- `replacing(path)`: one file written by a library that wants a file name (safetensors'
  `save_file`, matplotlib's `savefig`, `torch.save`, numpy's `tofile`): it gets a temporary
  name beside `path` and the result replaces `path` when the block ends without an error.
- `atomic_directory(target, replace=False)`: a whole directory, built under a temporary name
  beside `target` and renamed into place when the block ends without an error.

How: the data goes to a temporary name in the same directory (`.NAME.tmp-PID-XXXXXXXX`; the
same file system, so the rename is atomic), is flushed and fsynced, renamed over the target
with `os.replace`, and the directory holding it is fsynced so the rename itself survives a power
cut. An exception inside the block removes the temporary and leaves the target as it was.

A target that exists: `write_atomic` and `replacing` replace a file (that is what they are
for). `atomic_directory` refuses a target that exists and is not an empty directory with
`FileExistsError` (an `OSError`: the command line reports it as one line), unless
`replace=True`; then the old directory stays whole, under its own name, until the new one is
complete, and the two are swapped in one step (Linux `renameat2(RENAME_EXCHANGE)`). Where the
kernel or file system cannot exchange (not Linux, some network and overlay file systems) the
old one is renamed aside to `.NAME.old-PID-XXXXXXXX` and the new one renamed into place: a
crash between those two renames leaves no `NAME` but the whole old one beside it, and the next
`atomic_directory` for that target (or `remove_stale`) renames it back.

Leftovers of a killed writer (temporaries whose PID is no longer running on this machine) are
removed by the next `atomic_directory` for the same target, and by `remove_stale(directory)`,
which writers that put many files in one directory call when they start. Readers never see
them: their names start with a dot and end in `.tmp-PID-XXXXXXXX`, which matches no pattern a
reader looks for (`*.safetensors`, `config.json`, `train-*.bin`).

For the trainer's checkpoints (dscoder/train has none yet), this is the API to call:

    with atomic_directory(run_dir / f"step-{step:07d}") as tmp:
        save_hf_dir(model, tmp)                   # weights + config.json
        write_atomic(tmp / "trainer_state.json", json.dumps(state))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    # the checkpoint exists, whole and fsynced, from here on; never half of it before

and to move a "latest" pointer, `write_atomic(run_dir / "latest", name)`.

Written by hand on the standard library (tempfile, os.replace, os.fsync): `atomicwrites`, the
package that did this, was archived by its author in 2022 and handles single files only;
`os.rename` has no flags, so the directory exchange calls glibc's `renameat2` through ctypes.
Nothing here imports from dscoder: it sits at the bottom of the layers beside `errors`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

_KINDS = ("tmp", "old")
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_NAME_MAX = 120  # of the target's name kept in a temporary's name (file names are limited to 255 bytes)


def _sibling(path: Path, kind: str) -> Path:
    """A fresh name beside `path` that readers ignore and `remove_stale` recognises."""
    return path.with_name(f".{path.name[:_NAME_MAX]}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make the entries of `directory` (a rename, a new file) durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows: directories cannot be opened, and NTFS journals renames itself
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # file systems that cannot sync directories
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside `path` to write to; when the block ends without an error it is
    fsynced and replaces `path`, else it is removed and `path` stays as it was."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes | memoryview | str, encoding: str = "utf-8") -> None:
    """Replace `path` with `data` (text, or any bytes-like object) whole, or leave it as it was."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Clean up after killed writers in `directory` (only those of target `name`, if given).

    A temporary whose writer (its PID) is no longer running is removed; an old directory set
    aside by a swap that was cut short is renamed back when its target is missing, else
    removed. A PID still running (or reused by another process) keeps its entry: it is left
    for a later call, never taken from a live writer. Returns what was removed or restored.
    """
    directory = Path(directory)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    done = []
    for entry in entries:
        m = _STALE.match(entry)
        if m is None or (name is not None and m["name"] != name[:_NAME_MAX]) or _alive(int(m["pid"])):
            continue
        path = directory / entry
        target = directory / m["name"]
        if m["kind"] == "old" and len(m["name"]) < _NAME_MAX and not os.path.lexists(target):
            os.rename(path, target)
        else:
            _remove(path)
        done.append(path)
    if done:
        fsync_directory(directory)
    return done


def _is_empty_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(os.scandir(path))


def _refuse(target: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "exists and is not an empty directory; choose another output "
                                         "or ask for it to be replaced", str(target))


def _fsync_tree(root: Path) -> None:
    """Every file and directory under `root`, deepest first, so that nothing renamed into place is missing data."""
    for parent, dirs, files in os.walk(root, topdown=False):
        for file in files:
            if not os.path.islink(os.path.join(parent, file)):
                _fsync_file(Path(parent, file))
        fsync_directory(parent)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` in one step (renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _commit(tmp: Path, target: Path, replace: bool) -> None:
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)
            return
        except OSError as e:  # created meanwhile by someone else: decide as if it had been there
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
    if not (replace or _is_empty_directory(target)):
        raise _refuse(target)
    if _exchange(tmp, target):
        _remove(tmp)  # the old directory, now under the temporary name
        return
    aside = _sibling(target, "old")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)  # put the old one back: the caller sees the error and the old target
        raise
    fsync_directory(target.parent)
    _remove(aside)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """A new, empty directory beside `target` to build in; when the block ends without an error
    its contents are fsynced and it becomes `target` in one rename. An error (or a kill) leaves
    `target` as it was.

    `target` may be absent or an empty directory; anything else raises `FileExistsError` on
    entry (before any work), unless `replace`: then the old `target` stays until the new one is
    complete and is swapped out in one step. Leftovers of killed writers of the same target are
    cleaned up first (see `remove_stale`).
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    if os.path.lexists(target) and not (replace or _is_empty_directory(target)):
        raise _refuse(target)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        _commit(tmp, target, replace)
    except BaseException:
        _remove(tmp)
        raise
    fsync_directory(target.parent)
