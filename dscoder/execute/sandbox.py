"""Run one untrusted command so that nothing it does reaches the host.

Model-written code is hostile by default: it may loop, fork without end, allocate
without end, delete files, open sockets or try to outlive its time limit. Each command
here gets, in layers that do not depend on each other:

- **bubblewrap** (`bwrap`) when it works on this machine: new user, PID, network, IPC and
  UTS namespaces (so no network at all, and every process dies with the sandbox's PID 1);
  the host file system read-only; the home directories replaced by empty tmpfs (so
  `~/.ssh` does not exist inside); a private `/tmp`; only the work directory writable.
  Toolchains that live under a home directory (pyenv, rustup) are bound back read-only.
- **an unprivileged user id** when we are root: root ignores `RLIMIT_NPROC`, so a fork
  bomb run as root is not contained by rlimits; each parallel worker gets its own uid, so
  the process limit counts exactly that worker's processes, and "kill every process of
  this uid" reaps anything that escaped its process group.
- **rlimits** on CPU seconds, address space, processes, file size and open files, and no
  core dumps.
- **its own session**, killed as a group (bubblewrap, and with it the PID namespace, or the
  process group) when the wall-clock limit passes.

When bubblewrap is missing or cannot create namespaces (some containers forbid it), the
fallback is `unshare --net --pid` as root, or rlimits alone, with a loud warning naming
what is lost. Why not a container engine: none is guaranteed to run where this project
runs (CI, laptops, clusters), while bwrap is one small Debian package.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError

GiB = 1 << 30
MiB = 1 << 20

# Each worker runs as its own uid when we are root (see the module docstring), leased
# machine-wide through a lock file so that two evaluations running at once never share
# one (the post-run reaping kills every process of the uid). 61000-61999 is outside the
# ranges Debian hands to users and system accounts.
SANDBOX_UID_BASE = 61000
SANDBOX_UIDS = 1000


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use. CPU seconds are per process; the wall clock
    is what really bounds a sample (a fork bomb spreads CPU over many processes)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 20
    memory_bytes: int | None = 4 * GiB  # address space; None for runtimes that reserve huge virtual maps
    processes: int = 64
    file_bytes: int = 64 * MiB
    open_files: int = 256
    output_bytes: int = 64 * 1024  # kept of stdout and stderr each (the head and the tail)


@dataclass
class Outcome:
    """How a command ended. `timed_out` is True when the wall clock or the CPU limit stopped it."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class SandboxError(UserError):
    """The sandbox itself could not be set up (not the sandboxed program failing)."""


@dataclass
class Isolation:
    """Which layers this machine supports; probed once per process."""

    method: str  # "bwrap", "unshare" or "rlimits"
    drop_uid: bool  # running as root: each worker gets its own unprivileged uid
    warning: str | None = None

    @property
    def limits_processes(self) -> bool:
        """Whether RLIMIT_NPROC really contains a fork bomb here (not for root, not shared)."""
        return self.drop_uid or os.geteuid() != 0


_ISOLATION: Isolation | None = None


def _probe_bwrap(drop_uid: bool) -> str | None:
    """None when bwrap can build our sandbox here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    argv = _wrap(["true"], "bwrap", Path(tempfile.gettempdir()), (), {}, 65534 if drop_uid else None)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not start: {e}"
    if result.returncode != 0:
        return f"bwrap cannot create namespaces here: {result.stderr.strip()[:300]}"
    return None


def isolation(refresh: bool = False) -> Isolation:
    """Probe (once) what this machine can do, warning loudly about anything missing."""
    global _ISOLATION
    if _ISOLATION is not None and not refresh:
        return _ISOLATION
    forced = os.environ.get("DSCODER_SANDBOX")  # bwrap | unshare | rlimits: for tests and debugging
    drop_uid = os.geteuid() == 0
    why_not_bwrap = _probe_bwrap(drop_uid) if forced in (None, "bwrap") else f"DSCODER_SANDBOX={forced}"
    if why_not_bwrap is None:
        _ISOLATION = Isolation("bwrap", drop_uid)
    elif forced == "bwrap":
        raise SandboxError(f"DSCODER_SANDBOX=bwrap but {why_not_bwrap}")
    elif drop_uid and forced != "rlimits" and shutil.which("unshare") and shutil.which("setpriv"):
        _ISOLATION = Isolation("unshare", drop_uid, warning=(
            f"SANDBOX WEAKENED: {why_not_bwrap}. Falling back to `unshare --net --pid`: no network and a "
            "separate uid, but the host file system is visible (read-only only where that uid lacks rights)."))
    else:
        _ISOLATION = Isolation("rlimits", drop_uid, warning=(
            f"SANDBOX WEAKENED: {why_not_bwrap}. Falling back to rlimits and a process group only: "
            "programs CAN use the network and write wherever this user can. Install bubblewrap."))
    if _ISOLATION.warning:
        warnings.warn(_ISOLATION.warning, RuntimeWarning, stacklevel=2)
        print(f"WARNING: {_ISOLATION.warning}", file=sys.stderr)
    return _ISOLATION


def hidden_dirs() -> list[Path]:
    """Directories that hold users' secrets and files: replaced by empty tmpfs inside."""
    dirs = {Path("/root"), Path("/home"), Path.home()}
    return sorted(d for d in dirs if d.is_dir() and d != Path("/"))


def _as_uid(uid: int) -> list[str]:
    """The prefix that runs a command as `uid` with no groups and, as a non-root uid, no capabilities."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _wrap(argv: list[str], method: str, workdir: Path, mounts: tuple[Path, ...], env: dict[str, str],
          uid: int | None) -> list[str]:
    """The full command line for `method`. As root, the namespaces are built with root's
    rights (so toolchains under a 0700 /root can be bound back), then `setpriv` drops to
    `uid` with no capabilities: a real unprivileged uid, which RLIMIT_NPROC does bind
    (inside a user namespace created by root it would still count as root)."""
    drop = _as_uid(uid) if uid is not None else []
    if method == "rlimits":
        return drop + argv
    if method == "unshare":
        return ["unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc", "--"] + drop + argv
    if uid is not None:  # privileged bwrap: no user namespace, capabilities kept only to drop the uid
        wrapped = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                   "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        wrapped = ["bwrap", "--unshare-all"]
    wrapped += ["--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = hidden_dirs()
    for directory in hidden:
        wrapped += ["--tmpfs", str(directory)]
    made: set[Path] = set()
    for mount in mounts:  # toolchains under a hidden directory, bound back read-only
        for parent in reversed(mount.parents):  # bwrap would make missing parents 0700
            if parent not in made and any(parent.is_relative_to(h) and parent != h for h in hidden):
                wrapped += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        wrapped += ["--ro-bind", str(mount), str(mount)]
    wrapped += ["--perms", "1777", "--tmpfs", "/tmp", "--bind", str(workdir), "/tmp/work", "--chdir", "/tmp/work",
                "--clearenv"]
    for key, value in env.items():
        wrapped += ["--setenv", key, value]
    return wrapped + ["--"] + drop + argv


def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _rlimit_setter(limits: Limits, nproc: int):
    """Runs in the child between fork and exec: only async-signal-safe-ish syscalls, no locks."""
    wanted = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, limits.cpu_seconds),
              (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
              (resource.RLIMIT_NPROC, nproc)]
    if limits.memory_bytes is not None:
        wanted.append((resource.RLIMIT_AS, limits.memory_bytes))

    def apply() -> None:
        for which, value in wanted:
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
    return apply


def _read_capped(path: Path, cap: int) -> str:
    """The head and tail of a possibly huge output file, decoded leniently."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= cap:
            data = f.read()
        else:
            head = f.read(cap // 2)
            f.seek(size - cap // 2)
            data = head + f"\n[... {size - cap} bytes cut ...]\n".encode() + f.read()
    return data.decode("utf-8", errors="replace")


def reap_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (kill(-1) as that uid): the escape hatch for anything
    that left its process group, such as a double-forked daemon outside bwrap."""
    if os.geteuid() == 0 and uid != 0:
        deadline = time.monotonic() + 5
        # Until they are gone: dying processes still count against the next program's RLIMIT_NPROC.
        while _count_processes(uid) and time.monotonic() < deadline:
            subprocess.run(_as_uid(uid) + ["kill", "-KILL", "-1"], capture_output=True)
            time.sleep(0.01)


class UidLease:
    """Exclusive use of one sandbox uid, held (by an flock) until closed. Without root
    there is nothing to lease and `uid` is our own."""

    def __init__(self) -> None:
        self._file = None
        if not isolation().drop_uid:
            self.uid = os.geteuid()
            return
        locks = Path(tempfile.gettempdir()) / "dscoder-sandbox-uids"
        locks.mkdir(mode=0o700, exist_ok=True)
        for uid in range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UIDS):
            handle = open(locks / str(uid), "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self._file, self.uid = handle, uid
            reap_uid(uid)  # anything a crashed earlier holder left behind
            return
        raise SandboxError(f"all {SANDBOX_UIDS} sandbox uids are in use")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "UidLease":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(argv: list[str], workdir: Path, limits: Limits = Limits(), *, env: dict[str, str] | None = None,
        mounts: tuple[Path, ...] = (), uid: int | None = None, stdin: str | None = None) -> Outcome:
    """Run `argv` inside the sandbox with `workdir` as its only writable directory.

    `workdir` appears as /tmp/work under bwrap (so paths written into programs should be
    relative). `uid` is a leased sandbox uid (`UidLease`); None leases one for this call.
    """
    if uid is None:
        with UidLease() as lease:
            return run(argv, workdir, limits, env=env, mounts=mounts, uid=lease.uid, stdin=stdin)
    iso = isolation()
    inner = "/tmp/work" if iso.method == "bwrap" else str(workdir)
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": inner, "TMPDIR": inner,
                   "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    environment.update({k: v.replace("{work}", inner) for k, v in (env or {}).items()})
    command = _wrap(argv, iso.method, workdir, mounts, environment, uid if iso.drop_uid else None)
    # Processes of this uid already running count against RLIMIT_NPROC (a user's own
    # desktop session when not root), so the limit is "this many more".
    nproc = limits.processes + (0 if iso.drop_uid else _count_processes(uid))
    if iso.drop_uid:
        os.chown(workdir, uid, uid)
        for path in workdir.rglob("*"):
            os.lchown(path, uid, uid)
    with tempfile.TemporaryDirectory(prefix="dscoder-out-") as capture:
        out_path, err_path = Path(capture) / "stdout", Path(capture) / "stderr"
        start = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    command, cwd=workdir, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=out, stderr=err, env=None if iso.method == "bwrap" else environment,
                    start_new_session=True, preexec_fn=_rlimit_setter(limits, nproc))
            except OSError as e:
                raise SandboxError(f"cannot start {argv[0]!r}: {e}") from e
            try:
                proc.communicate(stdin.encode() if stdin is not None else None, timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
                if iso.drop_uid and iso.method != "bwrap":  # bwrap: the PID namespace died with it
                    reap_uid(uid)
                proc.wait()
        seconds = time.monotonic() - start
        code = proc.returncode
        timed_out = timed_out or code == -signal.SIGXCPU  # the CPU limit is a timeout too
        return Outcome(code, _read_capped(out_path, limits.output_bytes), _read_capped(err_path, limits.output_bytes),
                       seconds, timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Workdir:
    """A fresh temporary directory holding a program's files, removed afterwards."""

    files: dict[str, str | bytes] = field(default_factory=dict)
    path: Path | None = None

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="dscoder-sbx-"))
        for name, content in self.files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
