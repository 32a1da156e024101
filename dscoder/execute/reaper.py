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
and after each sample it reaps the zombies among its children that it did not start itself and
that are bwrap processes or run as a sandbox uid (the orphans of a sample run without a PID
namespace, under the `unshare` or rlimits fallback once bwrap has been used in this process).
That "did not start" matters: reaping a child that some `Popen` still waits for
would steal its exit status (Python then reports 0, a pass). So every bwrap is started through
`start` under a lock and stays in the live set until its `Popen` has been waited for, and the
reaping pass holds the same lock; other children (what the rest of the process runs) are never
touched.
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


def finished(proc: subprocess.Popen, sample_uids: range = range(0)) -> None:
    """After `proc.wait()`: forget it, and reap the orphans that have died so far."""
    with _LOCK:
        _LIVE.discard(proc.pid)
    reap(sample_uids)


def reap(sample_uids: range = range(0)) -> None:
    """Reap the zombies among our children that no `Popen` waits for and that are bwrap
    processes or ran as one of `sample_uids`."""
    global reaped
    with _LOCK:
        for pid in orphaned_zombies(os.getpid(), sample_uids):
            if pid in _LIVE:
                continue
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
            except ChildProcessError:
                pass


def orphaned_zombies(parent: int, sample_uids: range = range(0)) -> list[int]:
    """Zombie children of `parent` that are bwrap processes or ran as one of `sample_uids`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            uid = entry.stat().st_uid
        except OSError:
            continue
        comm_end = stat.rfind(b")")
        comm = stat[stat.find(b"(") + 1:comm_end]
        fields = stat[comm_end + 2:].split()
        if fields[0] == b"Z" and int(fields[1]) == parent and (comm == b"bwrap" or uid in sample_uids):
            found.append(int(entry.name))
    return found
