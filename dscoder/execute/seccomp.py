"""A seccomp filter for sandboxed commands: no new user namespaces, no kernel surfaces a
test program never needs.

Inside bubblewrap a program runs as an unprivileged uid with no capabilities, so mounting,
loading modules or tracing the host are refused anyway. What is left is the kernel's attack
surface reachable without privilege, chiefly `unshare -Ur`: a nested user namespace hands
the program uid 0 and a full capability set there (mount a tmpfs, make new network
namespaces), the route of many kernel privilege escalations. Container runtimes block it
with seccomp; so do we, with the rules Docker's default profile uses for the same calls:

- `unshare` and `clone` with CLONE_NEWUSER fail with EPERM; `clone3` fails with ENOSYS (its
  flags live in memory seccomp cannot read), so glibc falls back to `clone`, which is checked;
- `setns`, `mount`, `umount2`, `pivot_root`, `ptrace`, `process_vm_readv/writev`, `bpf`,
  `perf_event_open`, `userfaultfd`, `keyctl`/`add_key`/`request_key`, `io_uring_*`, module
  and kexec calls fail with EPERM.

The filter is compiled by libseccomp (through `pyseccomp`, a ctypes binding) rather than
written as raw BPF by hand: libseccomp handles the architecture checks (a 32-bit syscall
from a 64-bit process is killed) and the syscall numbering. It is handed to bubblewrap
(`--seccomp FD`), which installs it after its own setup, just before our command runs.
"""

from __future__ import annotations

import errno
import os

CLONE_NEWUSER = 0x10000000

DENIED = ("setns", "mount", "umount2", "pivot_root", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
          "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
          "io_uring_enter", "io_uring_register", "init_module", "finit_module", "delete_module", "kexec_load",
          "kexec_file_load", "open_by_handle_at", "name_to_handle_at")

_FILTER_FD: int | None = None
_WHY_NOT = ""


def _compile() -> bytes:
    import pyseccomp as sc

    rules = sc.SyscallFilter(defaction=sc.ALLOW)
    for call in ("unshare", "clone"):
        rules.add_rule(sc.ERRNO(errno.EPERM), call, sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for call in DENIED:
        try:
            rules.add_rule(sc.ERRNO(errno.EPERM), call)
        except (RuntimeError, ValueError, OSError):
            pass  # a call this architecture does not have
    read, write = os.pipe()  # a few hundred bytes: well within a pipe's buffer
    with os.fdopen(write, "wb") as sink:
        rules.export_bpf(sink)
    with os.fdopen(read, "rb") as source:
        return source.read()


def available() -> bool:
    """Whether a filter can be built here (pyseccomp and libseccomp present); probed once."""
    global _FILTER_FD, _WHY_NOT
    if _FILTER_FD is not None:
        return True
    if _WHY_NOT:
        return False
    try:
        program = _compile()
    except (ImportError, OSError, RuntimeError) as e:
        _WHY_NOT = f"cannot build a seccomp filter ({type(e).__name__}: {e}); install libseccomp2 and pyseccomp"
        return False
    fd = os.memfd_create("dscoder-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    _FILTER_FD = fd
    return True


def why_unavailable() -> str:
    available()
    return _WHY_NOT


def open_filter() -> int:
    """A fresh read-only descriptor of the compiled filter, at offset 0, for one bwrap run.

    bwrap reads its `--seccomp` descriptor to the end, so each run needs its own open file
    description (re-opening the memfd through /proc gives one); the caller closes it after
    the child has started."""
    if not available():
        raise OSError(_WHY_NOT)
    return os.open(f"/proc/self/fd/{_FILTER_FD}", os.O_RDONLY)
