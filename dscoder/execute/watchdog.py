"""The fallback cap on a whole sample when the kernel cannot enforce one.

Where no cgroup can be made (no root, no delegated subtree) or no tmpfs mounted, a thread
polls the sample while it runs: the resident memory of all its processes, summed, how many
processes it has, and the bytes in its scratch directory. Over any budget it kills the sample's process group (and,
when the sample runs as its own uid, every process of that uid) and records which limit it
was. Polling can overshoot by what a program allocates or writes between two polls (at
most `interval` seconds of it), so this is weaker than the kernel's enforcement, and the
README says so.

Where the kernel does enforce the caps (a cgroup per sample), the same thread reads the
group's events instead: the kernel refuses the allocation or the fork, but a sample whose one
child was OOM-killed, or whose forks fail at pids.max, may otherwise sit until the wall clock;
it is stopped at once, with the limit named.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")


def _processes() -> list[tuple[int, int, int]]:
    """(pid, ppid, uid) of every process we can see."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            found.append((int(entry.name), ppid, uid))
        except (OSError, ValueError):
            continue
    return found


def sample_pids(root_pid: int, uid: int | None) -> list[int]:
    """The sample's processes: every process of its own uid when it has one, else the
    descendants of `root_pid` (a daemon that reparented itself to init escapes this view,
    which is one reason the uid and the PID namespace are the stronger layers)."""
    table = _processes()
    if uid is not None:
        return [pid for pid, _, owner in table if owner == uid]
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in table:
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


class Watchdog(threading.Thread):
    """Polls until `stop()`; on a breach calls `kill()` once and keeps the limit's name in `hit`."""

    def __init__(self, root_pid: int, uid: int | None, *, memory_bytes: int | None,
                 disk_bytes: int | None, disk_used: Callable[[], int], kill: Callable[[], None],
                 processes: int | None = None, kernel_hit: Callable[[], str | None] | None = None,
                 interval: float = 0.05):
        super().__init__(daemon=True, name="sandbox-watchdog")
        self.root_pid, self.uid = root_pid, uid
        self.memory_bytes, self.disk_bytes, self.processes = memory_bytes, disk_bytes, processes
        self.disk_used, self.kill, self.interval = disk_used, kill, interval
        self.kernel_hit = kernel_hit
        self.hit: str | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.hit = self._breach()
            if self.hit:
                self.kill()
                return

    def _breach(self) -> str | None:
        """The limit the sample is over now, if any."""
        if self.kernel_hit is not None:
            hit = self.kernel_hit()
            if hit:
                return hit
        if self.memory_bytes is not None or self.processes is not None:
            pids = sample_pids(self.root_pid, self.uid)
            if self.memory_bytes is not None and resident_bytes(pids) > self.memory_bytes:
                return "memory"
            if self.processes is not None and len(pids) >= self.processes:
                # RLIMIT_NPROC refuses the next fork; without this the sample would sit at the
                # cap until the clock stopped it, and the verdict would not say why.
                return "processes"
        if self.disk_bytes is not None and self.disk_used() > self.disk_bytes:
            return "disk"
        return None

    def stop(self) -> None:
        self._stopped.set()
        self.join()
