"""One control group per sandboxed command: a cap on the whole sample, not on one process.

rlimits bind one process each: a Python sample may start 64 processes of 4 GiB address
space, and runtimes that reserve huge virtual maps (V8, the JVM, Go, .NET) cannot be given
an address-space limit at all. A memory cgroup counts what every process of the sample
really uses (resident pages, and the pages of the tmpfs its `/tmp` and work directory live
on, which the kernel charges to the cgroup that wrote them), and the pids controller caps
its processes and threads together.

The group is made under the cgroup this process already lives in (so a container's or a
systemd slice's own limits still bind around it), in the unified (v2) hierarchy when its
`memory` and `pids` controllers can be enabled there, else in the v1 `memory` and `pids`
hierarchies. Making one needs write access to that part of the tree: root, or a delegated
subtree. Where neither is possible, `available()` says why and the sandbox falls back to a
watchdog (see `sandbox.py`).

Processes join between fork and exec (`attach_self`, async-signal-safe: raw `os.open`/
`os.write` only), so nothing the sample starts can run outside the group even for a moment.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 hierarchy of `controller`, or in v2 (None)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def _v2_base() -> Path | None:
    """The v2 directory of this process where memory and pids can be delegated, or None."""
    mount = ROOT if (ROOT / "cgroup.controllers").exists() else ROOT / "unified"
    own = _own_path(None)
    if own is None or not (mount / "cgroup.controllers").exists():
        return None
    base = mount / own.lstrip("/")
    try:
        offered = (base / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    if not {"memory", "pids"} <= set(offered):
        return None
    # A v2 group with processes in it cannot also have children with controllers (the
    # "no internal processes" rule), so sample groups go under a leaf of our own.
    parent = base / f"dscoder-{os.getpid()}"
    try:
        parent.mkdir(exist_ok=True)
        (base / "cgroup.subtree_control").write_text("+memory +pids")
        (parent / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return None
    return parent


def _v1_bases() -> dict[str, Path] | None:
    bases = {}
    for controller in ("memory", "pids"):
        own = _own_path(controller)
        directory = ROOT / controller
        if own is None or not directory.is_dir():
            return None
        bases[controller] = directory / own.lstrip("/")
    return bases


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    bases: dict[str, Path]  # controller -> directory sample groups are made in ("" for v2)


_HIERARCHY: Hierarchy | None | str = "unprobed"
_WHY_NOT = ""


def _probe() -> Hierarchy | None:
    global _WHY_NOT
    v2 = _v2_base()
    if v2 is not None:
        return Hierarchy(2, {"": v2})
    v1 = _v1_bases()
    if v1 is None:
        _WHY_NOT = "no cgroup v2 memory+pids controllers and no v1 memory and pids hierarchies are mounted"
        return None
    probe = {c: base / f"dscoder-probe-{os.getpid()}" for c, base in v1.items()}
    try:
        for directory in probe.values():
            directory.mkdir(exist_ok=True)
        (probe["memory"] / "memory.limit_in_bytes").write_text(str(1 << 30))
        (probe["pids"] / "pids.max").write_text("64")
    except OSError as e:
        _WHY_NOT = f"cannot make a cgroup under {v1['memory']} ({e.strerror}; needs root or a delegated subtree)"
        return None
    finally:
        for directory in probe.values():
            try:
                directory.rmdir()
            except OSError:
                pass
    return Hierarchy(1, v1)


def hierarchy() -> Hierarchy | None:
    """The hierarchy sample groups are made in (probed once), or None when none can be."""
    global _HIERARCHY, _WHY_NOT
    if _HIERARCHY == "unprobed":
        if os.environ.get("DSCODER_SANDBOX_NO_CGROUP"):
            _HIERARCHY, _WHY_NOT = None, "DSCODER_SANDBOX_NO_CGROUP is set"
        else:
            _HIERARCHY = _probe()
    return _HIERARCHY  # type: ignore[return-value]


def why_unavailable() -> str:
    hierarchy()
    return _WHY_NOT


class SampleGroup:
    """The control group of one sandboxed command: made by `__init__`, joined by the child
    (`attach_self` in preexec), read after the run (`limit_hit`), emptied and removed by `close`."""

    _counter = 0

    def __init__(self, memory_bytes: int, processes: int):
        found = hierarchy()
        if found is None:
            raise OSError(why_unavailable())
        SampleGroup._counter += 1
        name = f"sample-{os.getpid()}-{SampleGroup._counter}-{time.monotonic_ns()}"
        self.version = found.version
        self.memory_bytes, self.processes = memory_bytes, processes
        self.dirs = {c: base / name for c, base in found.bases.items()}
        for directory in self.dirs.values():
            directory.mkdir()
        try:
            if self.version == 2:
                group = self.dirs[""]
                (group / "memory.max").write_text(str(memory_bytes))
                _write_if_present(group / "memory.swap.max", "0")
                (group / "pids.max").write_text(str(processes))
            else:
                memory = self.dirs["memory"]
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                _write_if_present(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                _write_if_present(memory / "memory.swappiness", "0")
                (self.dirs["pids"] / "pids.max").write_text(str(processes))
        except OSError:
            self.close()
            raise
        self._procs = [str(d / "cgroup.procs").encode() for d in self.dirs.values()]

    def attach_self(self) -> None:
        """Move the calling process into the group. Runs in the child between fork and exec."""
        pid = str(os.getpid()).encode()
        for path in self._procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def _read(self, controller: str, name: str) -> str:
        try:
            return (self.dirs[controller] / name).read_text()
        except (OSError, KeyError):
            return ""

    def limit_hit(self) -> str | None:
        """"memory" when the kernel had to kill in this group for memory, "processes" when a
        fork or thread was refused at pids.max, else None."""
        memory_controller = "" if self.version == 2 else "memory"
        pids_controller = "" if self.version == 2 else "pids"
        events = _fields(self._read(memory_controller, "memory.events" if self.version == 2 else "memory.oom_control"))
        if events.get("oom_kill", 0) > 0 or (self.version == 2 and events.get("oom", 0) > 0):
            return "memory"
        if _fields(self._read(pids_controller, "pids.events")).get("max", 0) > 0:
            return "processes"
        return None

    def peak_bytes(self) -> int | None:
        controller = "" if self.version == 2 else "memory"
        text = self._read(controller, "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else None

    def pids(self) -> list[int]:
        controller = "" if self.version == 2 else "pids"
        return [int(p) for p in self._read(controller, "cgroup.procs").split()]

    def kill_all(self, deadline_seconds: float = 5.0) -> None:
        """SIGKILL everything still in the group (a daemon that left its session), until empty."""
        deadline = time.monotonic() + deadline_seconds
        if self.version == 2:
            _write_if_present(self.dirs[""] / "cgroup.kill", "1")
        while time.monotonic() < deadline:
            left = self.pids()
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def close(self) -> None:
        self.kill_all()
        for directory in self.dirs.values():
            for _ in range(100):  # rmdir fails with EBUSY until the last killed task is gone
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _write_if_present(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass


def _fields(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out
