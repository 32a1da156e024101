"""Run one untrusted command so that nothing it does reaches the host.

Model-written code is hostile by default, and once it is a reinforcement-learning reward it
is optimised against this module: it may loop, fork without end, allocate without end, fill
the disk, delete files, open sockets, start a user namespace or try to outlive its time
limit. Each command here gets, in layers that do not depend on each other:

- **bubblewrap** (`bwrap`) when it works on this machine: new PID, network, IPC and UTS
  namespaces (so no network at all, and every process dies with the sandbox's PID 1); a root
  file system made of an **allowlist** bound read-only (`/usr`, `/etc`, the merged-usr
  links, and the install prefixes of the toolchains), so home directories, other checkouts,
  `/srv`, `/opt` and the host's unix sockets under `/run` and `/var` do not exist inside;
  a fresh `/dev` and `/proc`; `/tmp` is the sample's scratch directory and `/tmp/work` its
  work directory, the only writable places;
- **a seccomp filter** (`seccomp.py`): no nested user namespaces, no mount, ptrace, bpf,
  keyctl, io_uring and the like;
- **an unprivileged uid** when we are root, with no capabilities left in any set
  (bounding and inheritable included) and `no_new_privs`, so setuid binaries do nothing:
  root ignores `RLIMIT_NPROC`, and each parallel worker gets its own uid, so "kill every
  process of this uid" reaps anything that escaped its process group;
- **a cap on the whole sample** (`cgroups.py`): one cgroup per command bounds the memory
  of all its processes together, its tmpfs pages included, and its process count; the
  scratch directory (`scratch.py`) is a tmpfs of `disk_bytes`. Where the kernel offers no
  cgroup or no mount, a watchdog (`watchdog.py`) sums the same and kills over budget;
- **rlimits** on CPU seconds, address space (for runtimes that do not reserve huge maps),
  processes, file size and open files, and no core dumps;
- **its own session**, killed as a group (bubblewrap, and with it the PID namespace, or the
  process group) when the wall-clock limit passes.

`Outcome.limit` names the limit a command ran into ("memory limit 1 GiB exceeded"), so a
verdict can say why. When bubblewrap is missing or cannot create namespaces (some containers
forbid it), the fallback is `unshare --net --pid` as root, or rlimits alone, with a loud
warning naming what is lost. Why not a container engine: none is guaranteed to run where
this project runs (CI, laptops, clusters), while bwrap is one small Debian package.
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
from dscoder.execute import cgroups, reaper, seccomp
from dscoder.execute.scratch import Scratch, can_mount
from dscoder.execute.scratch import why_unavailable as why_no_tmpfs
from dscoder.execute.watchdog import Watchdog
from dscoder.settings import setting

GiB = 1 << 30
MiB = 1 << 20

# Each worker runs as its own uid when we are root (see the module docstring), leased
# machine-wide through a lock file so that two evaluations running at once never share
# one (the post-run reaping kills every process of the uid). 61000-61999 is outside the
# ranges Debian hands to users and system accounts.
SANDBOX_UID_BASE = 61000
SANDBOX_UIDS = 1000
SANDBOX_UID_RANGE = range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UIDS)

# What a sandboxed program sees of the host file system, read-only: the system's programs,
# libraries and configuration. Everything else (home directories, /srv, /opt, /var, /run
# with its unix sockets, /mnt, /media) does not exist inside; toolchains installed outside
# these are bound back by their install prefix (`mounts`).
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _size(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use. CPU seconds are per process; the wall clock
    is what really bounds a sample (a fork bomb spreads CPU over many processes).
    `memory_bytes`, `processes` and `disk_bytes` bound the sample as a whole, all its
    processes together; `address_space_bytes` is a per-process rlimit kept as an extra layer
    for runtimes that do not reserve huge virtual maps."""

    wall_seconds: float = setting(10.0, "Wall-clock seconds before the whole sample is killed (timed out).")
    cpu_seconds: int = setting(20, "CPU seconds per process (RLIMIT_CPU); a process past it is killed (timed out).")
    memory_bytes: int = setting(
        1 * GiB, "Bytes the sample may hold in all: the resident memory of every process plus the files in "
                 "its /tmp and work directory (a cgroup, else the watchdog).")
    address_space_bytes: int | None = setting(
        4 * GiB, "Virtual address space per process (RLIMIT_AS), an extra layer; None for runtimes that "
                 "reserve huge virtual maps (the JVM, Go, V8).")
    processes: int = setting(64, "Processes and threads the sample may run at once (a pids cgroup, else RLIMIT_NPROC).")
    disk_bytes: int = setting(512 * MiB, "Bytes of files in /tmp and the work directory together.")
    file_bytes: int = setting(64 * MiB, "Largest single file a process may write (RLIMIT_FSIZE).")
    open_files: int = setting(256, "Open file descriptors per process (RLIMIT_NOFILE).")
    output_bytes: int = setting(64 * 1024, "Bytes kept of stdout and of stderr each (the head and the tail).")


@dataclass
class Outcome:
    """How a command ended. `timed_out` is True when the wall clock or the CPU limit stopped
    it; `limit` names a whole-sample limit it ran into ("memory limit 1 GiB exceeded"), if any."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    limit: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.limit is None


class SandboxError(UserError):
    """The sandbox itself could not be set up (not the sandboxed program failing)."""


@dataclass
class Isolation:
    """Which layers this machine supports; probed once per process."""

    method: str  # "bwrap", "unshare" or "rlimits"
    drop_uid: bool  # running as root: each worker gets its own unprivileged uid
    warning: str | None = None
    cgroups: bool = False  # the kernel caps each sample's memory and processes (else the watchdog does)
    tmpfs: bool = False  # each sample's scratch is a size-capped tmpfs (else the watchdog counts its bytes)
    seccomp: bool = False  # nested user namespaces and the other denied calls are refused

    @property
    def limits_processes(self) -> bool:
        """Whether a fork bomb is really contained here (a pids cgroup, or RLIMIT_NPROC on a
        uid of its own: root ignores RLIMIT_NPROC)."""
        return self.cgroups or self.drop_uid or os.geteuid() != 0

    def describe(self) -> str:
        layers = [self.method]
        if self.drop_uid:
            layers.append("one unprivileged uid per worker")
        layers.append("cgroup per sample" if self.cgroups else "watchdog for memory")
        layers.append("tmpfs scratch" if self.tmpfs else "watchdog for disk")
        if self.method == "bwrap":
            layers.append("seccomp" if self.seccomp else "no seccomp")
        return ", ".join(layers)


_ISOLATION: Isolation | None = None


def _probe_bwrap(drop_uid: bool, use_seccomp: bool) -> str | None:
    """None when bwrap can build our sandbox here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    scratch = Path(tempfile.mkdtemp(prefix="dscoder-probe-"))
    (scratch / "work").mkdir()
    filter_fd = seccomp.open_filter() if use_seccomp else None
    try:
        argv = _wrap(["true"], "bwrap", scratch, (), {}, 65534 if drop_uid else None, filter_fd)
        # Through the reaper like every bwrap, so a reaping pass in another thread never takes its status.
        proc = reaper.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            pass_fds=() if filter_fd is None else (filter_fd,))
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.wait()
            return f"bwrap could not start: {e}"
        finally:
            reaper.finished(proc)
    except OSError as e:
        return f"bwrap could not start: {e}"
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0:
        return f"bwrap cannot create namespaces here: {stderr.strip()[:300]}"
    return None


def isolation(refresh: bool = False) -> Isolation:
    """Probe (once) what this machine can do, warning loudly about anything missing."""
    global _ISOLATION
    if _ISOLATION is not None and not refresh:
        return _ISOLATION
    forced = os.environ.get("DSCODER_SANDBOX")  # bwrap | unshare | rlimits: for tests and debugging
    drop_uid = os.geteuid() == 0
    use_seccomp = seccomp.available()
    why_not_bwrap = _probe_bwrap(drop_uid, use_seccomp) if forced in (None, "bwrap") else f"DSCODER_SANDBOX={forced}"
    if why_not_bwrap is None:
        iso = Isolation("bwrap", drop_uid, seccomp=use_seccomp)
    elif forced == "bwrap":
        raise SandboxError(f"DSCODER_SANDBOX=bwrap but {why_not_bwrap}")
    elif drop_uid and forced != "rlimits" and shutil.which("unshare") and shutil.which("setpriv"):
        iso = Isolation("unshare", drop_uid, warning=(
            f"SANDBOX WEAKENED: {why_not_bwrap}. Falling back to `unshare --net --pid`: no network and a "
            "separate uid, but the host file system is visible (read-only only where that uid lacks rights)."))
    else:
        iso = Isolation("rlimits", drop_uid, warning=(
            f"SANDBOX WEAKENED: {why_not_bwrap}. Falling back to rlimits and a process group only: "
            "programs CAN use the network and write wherever this user can. Install bubblewrap."))
    if iso.method == "bwrap":
        reaper.become_subreaper()  # bwrap leaves its namespace init to PID 1, which may never reap it
    iso.cgroups = cgroups.hierarchy() is not None
    iso.tmpfs = can_mount()
    weaker = []
    if not iso.cgroups:
        weaker.append(f"no cgroup per sample ({cgroups.why_unavailable()}): a watchdog polls memory instead")
    if not iso.tmpfs:
        weaker.append(f"no tmpfs mounts ({why_no_tmpfs()}): a watchdog counts scratch bytes instead")
    if iso.method == "bwrap" and not use_seccomp:
        weaker.append(f"no seccomp filter ({seccomp.why_unavailable()}): nested user namespaces are possible")
    if weaker and iso.warning is None:
        iso.warning = "SANDBOX WEAKENED: " + "; ".join(weaker) + "."
    _ISOLATION = iso
    if iso.warning:
        warnings.warn(iso.warning, RuntimeWarning, stacklevel=2)
        print(f"WARNING: {iso.warning}", file=sys.stderr)
    return iso


def _as_uid(uid: int) -> list[str]:
    """The prefix that runs a command as `uid` with no groups, no capabilities in any set
    (so a later exec cannot regain one) and no_new_privs (so setuid binaries grant nothing)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def _system_binds() -> list[str]:
    """The allowlisted system directories, read-only; merged-usr links stay links."""
    args: list[str] = []
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    return args


def _covered(path: Path) -> bool:
    return any(path == Path(d) or path.is_relative_to(d) for d in SYSTEM_DIRS if not os.path.islink(d))


def _wrap(argv: list[str], method: str, scratch: Path, mounts: tuple[Path, ...], env: dict[str, str],
          uid: int | None, filter_fd: int | None = None, shm_bytes: int = Limits.disk_bytes) -> list[str]:
    """The full command line for `method`. As root, the namespaces are built with root's
    rights (so toolchains under a 0700 /root can be bound back), then `setpriv` drops to
    `uid` with no capabilities: a real unprivileged uid, which RLIMIT_NPROC does bind
    (inside a user namespace created by root it would still count as root). `scratch` is
    the sample's scratch directory, /tmp inside, with the work directory at /tmp/work;
    /dev/shm is a tmpfs of its own, capped at `shm_bytes`."""
    drop = _as_uid(uid) if uid is not None else []
    if method == "rlimits":
        return drop + argv
    if method == "unshare":
        return ["unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc", "--"] + drop + argv
    if uid is not None:  # privileged bwrap: no user namespace, capabilities kept only to drop the uid and the sets
        wrapped = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                   "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        wrapped = ["bwrap", "--unshare-all", "--disable-userns"]
    wrapped += ["--die-with-parent", "--new-session"] + _system_binds()
    wrapped += ["--dev", "/dev", "--perms", "1777", "--size", str(shm_bytes), "--tmpfs", "/dev/shm", "--proc", "/proc"]
    made: set[Path] = set()
    for mount in mounts:  # toolchains outside the allowlist, bound back read-only
        if _covered(mount):
            continue
        for parent in reversed(mount.parents):  # bwrap would make missing parents 0700
            if parent != Path("/") and parent not in made:
                wrapped += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        wrapped += ["--ro-bind", str(mount), str(mount)]
    wrapped += ["--bind", str(scratch), "/tmp", "--chdir", "/tmp/work", "--remount-ro", "/", "--clearenv"]
    for key, value in env.items():
        wrapped += ["--setenv", key, value]
    if filter_fd is not None:
        wrapped += ["--seccomp", str(filter_fd)]
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


def _child_setup(limits: Limits, nproc: int, group: cgroups.SampleGroup | None):
    """Runs in the child between fork and exec: join the sample's cgroup (before anything
    can fork), then set the rlimits. Only raw syscalls, no locks."""
    wanted = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, limits.cpu_seconds),
              (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
              (resource.RLIMIT_NPROC, nproc)]
    if limits.address_space_bytes is not None:
        wanted.append((resource.RLIMIT_AS, limits.address_space_bytes))

    def apply() -> None:
        if group is not None:
            group.attach_self()
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
        for uid in SANDBOX_UID_RANGE:
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


# Work directories made by `Workdir`, to the scratch directory each lives in: `run` binds the
# whole scratch as /tmp so that /tmp and the work directory share one cap.
_SCRATCH_OF: dict[Path, Scratch] = {}


def run(argv: list[str], workdir: Path, limits: Limits = Limits(), *, env: dict[str, str] | None = None,
        mounts: tuple[Path, ...] = (), uid: int | None = None, stdin: str | None = None) -> Outcome:
    """Run `argv` inside the sandbox with `workdir` as its only writable directory.

    `workdir` appears as /tmp/work under bwrap (so paths written into programs should be
    relative); made by `Workdir`, it shares the size-capped scratch that is /tmp inside.
    `uid` is a leased sandbox uid (`UidLease`); None leases one for this call.
    """
    if uid is None:
        with UidLease() as lease:
            return run(argv, workdir, limits, env=env, mounts=mounts, uid=lease.uid, stdin=stdin)
    scratch = _SCRATCH_OF.get(Path(workdir))
    if scratch is None:
        raise SandboxError(f"{workdir} was not made by sandbox.Workdir: the sandbox only runs in a scratch "
                           "directory of its own, whose size it caps")
    iso = isolation()
    inner = "/tmp/work" if iso.method == "bwrap" else str(workdir)
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": inner, "TMPDIR": inner,
                   "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    environment.update({k: v.replace("{work}", inner) for k, v in (env or {}).items()})
    filter_fd = seccomp.open_filter() if iso.method == "bwrap" and iso.seccomp else None
    try:
        command = _wrap(argv, iso.method, scratch.root, mounts, environment, uid if iso.drop_uid else None, filter_fd,
                        limits.disk_bytes)
        if iso.drop_uid:
            _give(scratch, uid)
        group = cgroups.SampleGroup(limits.memory_bytes, limits.processes) if iso.cgroups else None
        try:
            return _launch(command, workdir, limits, environment, iso, uid, stdin, scratch, group, filter_fd)
        finally:
            if group is not None:
                group.close()
    finally:
        if filter_fd is not None:
            os.close(filter_fd)


def _give(scratch: Scratch, uid: int) -> None:
    """Hand the work directory's files to the sample's uid (never following a link)."""
    for directory, subdirs, files in os.walk(scratch.work):
        os.lchown(directory, uid, uid)
        for name in subdirs + files:
            os.lchown(os.path.join(directory, name), uid, uid)


def _launch(command: list[str], workdir: Path, limits: Limits, environment: dict[str, str], iso: Isolation,
            uid: int, stdin: str | None, scratch: Scratch, group: cgroups.SampleGroup | None,
            filter_fd: int | None) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="dscoder-out-") as capture:
        out_path, err_path = Path(capture) / "stdout", Path(capture) / "stderr"
        start = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = reaper.start(
                    command, cwd=workdir, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=out, stderr=err, env=None if iso.method == "bwrap" else environment,
                    start_new_session=True, preexec_fn=_child_setup(limits, nproc_for(limits, iso, uid), group),
                    pass_fds=() if filter_fd is None else (filter_fd,))
            except OSError as e:
                raise SandboxError(f"cannot start {command[0]!r}: {e}") from e
            dog = Watchdog(proc.pid, uid if iso.drop_uid else None,
                           memory_bytes=None if group is not None else limits.memory_bytes,
                           disk_bytes=None if scratch.capped else limits.disk_bytes,
                           disk_used=scratch.bytes_used, kill=lambda: _kill(proc, iso, uid, group),
                           processes=None if group is not None else limits.processes,
                           kernel_hit=group.limit_hit if group is not None else None)
            dog.start()
            try:
                proc.communicate(stdin.encode() if stdin is not None else None, timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                dog.stop()
                _kill(proc, iso, uid, group)
                proc.wait()
                reaper.finished(proc, SANDBOX_UID_RANGE)
        seconds = time.monotonic() - start
        code = proc.returncode
        timed_out = timed_out or code == -signal.SIGXCPU  # the CPU limit is a timeout too
        hit = dog.hit or (group.limit_hit() if group is not None else None)
        if hit is None and scratch.full():
            hit = "disk"
        return Outcome(code, _read_capped(out_path, limits.output_bytes), _read_capped(err_path, limits.output_bytes),
                       seconds, timed_out, _limit_message(hit, limits))


def nproc_for(limits: Limits, iso: Isolation, uid: int) -> int:
    """Processes of this uid already running count against RLIMIT_NPROC (a user's own
    desktop session when not root), so the limit is "this many more"."""
    return limits.processes + (0 if iso.drop_uid else _count_processes(uid))


def _limit_message(hit: str | None, limits: Limits) -> str | None:
    if hit == "memory":
        return f"memory limit {_size(limits.memory_bytes)} exceeded (all processes and /tmp together)"
    if hit == "disk":
        return f"disk limit {_size(limits.disk_bytes)} exceeded (/tmp and the work directory together)"
    if hit == "processes":
        return f"process limit {limits.processes} reached"
    return None


def _kill(proc: subprocess.Popen, iso: Isolation, uid: int, group: cgroups.SampleGroup | None) -> None:
    """Kill the whole sample: its session, its cgroup, and (outside bwrap's PID namespace)
    every process of its uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if group is not None:
        group.kill_all()
    if iso.drop_uid and iso.method != "bwrap":  # bwrap: the PID namespace died with it
        reap_uid(uid)


@dataclass
class Workdir:
    """A fresh work directory holding a program's files, inside a scratch directory of its
    own (a tmpfs capped at `disk_bytes` where this process may mount), removed afterwards."""

    files: dict[str, str | bytes] = field(default_factory=dict)
    disk_bytes: int = Limits.disk_bytes
    path: Path | None = None

    def __enter__(self) -> Path:
        self._scratch = Scratch(self.disk_bytes)
        self.path = self._scratch.work
        _SCRATCH_OF[self.path] = self._scratch
        for name, content in self.files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        return self.path

    def __exit__(self, *exc) -> None:
        _SCRATCH_OF.pop(self.path, None)
        self._scratch.close()
