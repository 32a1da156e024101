"""The disk a sample may write: one size-capped tmpfs holding its `/tmp` and work directory.

A sample's files are a resource like its memory: one program wrote 2.24 GiB into the host's
temporary directory in 2.5 s before this existed. Each sample gets a scratch directory; when
this process may mount (root), it is a fresh tmpfs of `size` bytes, mounted nosuid and nodev,
so writes past the cap fail with ENOSPC and, because tmpfs pages are charged to the memory
cgroup of the writer, count against the sample's memory cap too. Inside the sandbox the
scratch directory is `/tmp` and its `work/` subdirectory is `/tmp/work`, so the two share one
cap. Where mounting is not allowed the scratch directory is a plain temporary directory and
the sandbox's watchdog sums its bytes instead (`bytes_used`), killing the sample over the cap.

Why `mount(2)` through ctypes rather than the `mount` command: it is one syscall per sample
with nothing to parse, and no library wraps it. A run that is killed before it unmounts
leaves a mount behind; the next scratch directory made on this machine sweeps those whose
owning process is gone (`sweep_stale`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from pathlib import Path

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
PREFIX = "dscoder-sbx-"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CAN_MOUNT: bool | None = None
_WHY_NOT = ""


def _mount_tmpfs(path: Path, size: int) -> None:
    options = f"size={size},mode=1777,nr_inodes=65536".encode()
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _unmount(path: Path) -> None:
    _libc.umount2(str(path).encode(), MNT_DETACH)


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (probed once, by trying); `why_unavailable` says why not."""
    global _CAN_MOUNT, _WHY_NOT
    if _CAN_MOUNT is None:
        if os.environ.get("DSCODER_SANDBOX_NO_TMPFS"):
            _CAN_MOUNT, _WHY_NOT = False, "DSCODER_SANDBOX_NO_TMPFS is set"
        elif os.geteuid() != 0:
            _CAN_MOUNT, _WHY_NOT = False, "not root"
        else:
            probe = Path(tempfile.mkdtemp(prefix=f"{PREFIX}probe-"))
            try:
                _mount_tmpfs(probe, 1 << 20)
                _unmount(probe)
                _CAN_MOUNT = True
            except OSError as e:
                _CAN_MOUNT, _WHY_NOT = False, f"mount(2) refused: {e.strerror}"
            finally:
                probe.rmdir()
    return _CAN_MOUNT


def why_unavailable() -> str:
    can_mount()
    return _WHY_NOT


def sweep_stale() -> None:
    """Unmount and remove scratch directories left mounted by processes that no longer exist."""
    pattern = re.compile(re.escape(tempfile.gettempdir()) + "/" + re.escape(PREFIX) + r"(\d+)-")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        point = line.split()[4]
        found = pattern.match(point)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            _unmount(Path(point))
            shutil.rmtree(point, ignore_errors=True)


class Scratch:
    """One sample's scratch directory (see the module docstring): `root` becomes /tmp inside
    the sandbox, `work` becomes /tmp/work. `capped` says whether the kernel enforces `size`."""

    def __init__(self, size: int):
        self.size = size
        if can_mount():
            sweep_stale()
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.capped = False
        if can_mount():
            try:
                _mount_tmpfs(self.root, size)
                self.capped = True
            except OSError:
                pass
        self.root.chmod(0o1777)
        self.work = self.root / "work"
        self.work.mkdir()

    def bytes_used(self) -> int:
        """Bytes held in the scratch directory (from the file system when it is our tmpfs,
        else by walking it: allocated blocks, so sparse files count what they really hold)."""
        if self.capped:
            stats = os.statvfs(self.root)
            return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        total = 0
        for directory, subdirs, files in os.walk(self.root):
            for name in files + subdirs:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_blocks * 512
                except OSError:
                    pass
        return total

    def full(self) -> bool:
        """Whether the sample used (nearly) all of its cap."""
        return self.bytes_used() >= self.size - (256 << 10)

    def close(self) -> None:
        if self.capped:
            _unmount(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
