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


def _children(parent: int) -> list[int]:
    """The children of `parent`, zombies included: from each thread's `children` file where the
    kernel has them (a few small reads), else by reading every process's parent from /proc."""
    if os.path.exists(f"/proc/{parent}/task/{parent}/children"):
        found = []
        for tid in os.listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    found += [int(pid) for pid in f.read().split()]
            except OSError:  # the thread has ended
                continue
        return found
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and _stat(int(e.name))[2] == parent]


def _stat(pid: int) -> tuple[bytes, bytes, int]:
    """(command name, state, parent pid) of `pid`, or (b"", b"", 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return b"", b"", 0
    comm_end = stat.rfind(b")")
    fields = stat[comm_end + 2:].split()
    return stat[stat.find(b"(") + 1:comm_end], fields[0], int(fields[1])


def orphaned_zombies(parent: int, sample_uids: range = range(0)) -> list[int]:
    """Zombie children of `parent` that are bwrap processes or ran as one of `sample_uids`."""
    found = []
    for pid in _children(parent):
        comm, state, ppid = _stat(pid)
        if state != b"Z" or ppid != parent:
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if comm == b"bwrap" or uid in sample_uids:
            found.append(pid)
    return found
