"""Reaping what bubblewrap leaves behind: its namespace init, handed to PID 1.

bwrap runs as two processes: the outer one (our child) and, inside the new PID namespace, an
init that starts the command. When the command ends, the init reports its status to the outer
bwrap through an eventfd and the outer one exits at once, without waiting for the init; the
init is then an orphan, reparented to PID 1. A real init reaps it. But in a container PID 1 is
often not one (`docker run` without `--init`, where PID 1 may be `dscoder eval` itself, or a
VM's agent): every sample then leaves a zombie, and an RL run of millions of samples runs out
of PIDs.

So the process that runs samples makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`,
as buildah and containerd's shims do): orphans of its descendants come to it instead of PID 1,
and after each sample it reaps the zombies among its children that are bwrap processes it did
not start itself. That "did not start" matters: reaping a child that some `Popen` still waits for
would steal its exit status (Python then reports 0, a pass). So every bwrap is started through
`start` under a lock and stays in the live set until its `Popen` has been waited for, and the
reaping pass holds the same lock; children that are not bwrap are never touched.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading

PR_SET_CHILD_SUBREAPER = 36

_LOCK = threading.Lock()
_LIVE: set[int] = set()  # pids of bwrap processes whose Popen has not been waited for
_SUBREAPER: bool | None = None
reaped = 0  # orphans reaped so far in this process (the tests read it)


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux; once). False where it cannot."""
    global _SUBREAPER
    if _SUBREAPER is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _SUBREAPER = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _SUBREAPER = False
    return _SUBREAPER


def start(argv: list[str], **popen_args) -> subprocess.Popen:
    """`subprocess.Popen(argv, **popen_args)`, registered as live until `finished`."""
    with _LOCK:
        proc = subprocess.Popen(argv, **popen_args)
        _LIVE.add(proc.pid)
    return proc


def finished(proc: subprocess.Popen) -> None:
    """After `proc.wait()`: forget it, and reap the orphans that have died so far."""
    with _LOCK:
        _LIVE.discard(proc.pid)
    reap()


def reap() -> None:
    """Reap the zombies among our children that are bwrap processes no `Popen` waits for."""
    global reaped
    with _LOCK:
        for pid in zombie_bwrap_children(os.getpid()):
            if pid in _LIVE:
                continue
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
            except ChildProcessError:
                pass


def zombie_bwrap_children(parent: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm_end = stat.rfind(b")")
        comm = stat[stat.find(b"(") + 1:comm_end]
        fields = stat[comm_end + 2:].split()
        if comm == b"bwrap" and fields[0] == b"Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found
