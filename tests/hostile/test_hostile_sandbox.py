"""The sandbox's regression battery: one small program per attack (and language where the
attack differs by runtime), in `attacks/`, each with the outcome it must get.

Each program's header names the attack and its expectation:
- `contained`: the program prints `ESCAPED ...` if the attack got through; the test also
  checks the host side directly (no file written outside, nothing accepted on a socket,
  the canary intact, no process left);
- `limit=memory|disk|process`: the sample must be stopped with that limit named in
  `Outcome.limit` (several names joined by `|` when the kernel may stop it by either);
- `timeout`: the wall clock stops it, and nothing of it survives.

The attacks aim only at files, sockets and processes this test created, so a broken sandbox
fails the test without harming the machine. Where the kernel cannot enforce a cap (no
cgroup, no tmpfs mount) the watchdog does, and the same expectations hold.
`make test-hostile` runs these and the slow ones (other runtimes, the memory floor).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import requires

from dscoder.execute import cgroups, sandbox, scratch, toolchains

ATTACKS = Path(__file__).parent / "attacks"
CHECKOUT = Path(__file__).resolve().parents[2]
LANGUAGE = {".py": "python", ".js": "js", ".java": "java", ".go": "go"}
SLOW_LANGUAGES = {"java", "go"}  # a compile step of several seconds each


def header(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines()[:3]:
        found = re.match(r"^(?:#|//) (attack|expect): (.*)$", line)
        if found:
            fields[found.group(1)] = found.group(2).strip()
    return fields


def attack_params(expect: str) -> list:
    params = []
    for path in sorted(ATTACKS.iterdir()):
        info = header(path)
        if not info.get("expect", "").startswith(expect):
            continue
        language = LANGUAGE[path.suffix]
        marks = [pytest.mark.slow] if language in SLOW_LANGUAGES else []
        params.append(pytest.param(path.name, id=path.stem, marks=marks))
    return params


@pytest.fixture(scope="module")
def isolated():
    iso = sandbox.isolation()
    if iso.method != "bwrap":
        requires("sandbox", f"the attack battery needs bubblewrap ({iso.warning})")
    return iso


def run_attack(name: str, values: dict[str, str] | None = None, *, wall_seconds: float = 10.0,
               uid: int | None = None) -> sandbox.Outcome:
    """Build (if the language compiles) and run one attack program in a fresh sandbox."""
    path = ATTACKS / name
    language = LANGUAGE[path.suffix]
    tool = toolchains.toolchain(language)
    if tool.missing():
        requires(f"toolchain:{language}", f"{language} is needed for {name}: {tool.missing()}")
    source = path.read_text()
    for key, value in (values or {}).items():
        source = source.replace("{{" + key + "}}", value)
    if uid is None:
        with sandbox.UidLease() as lease:
            return run_attack(name, values, wall_seconds=wall_seconds, uid=lease.uid)
    with sandbox.Workdir({tool.filename: source, **tool.support_files()}) as workdir:
        if tool.build:
            built = sandbox.run(list(tool.build), workdir, tool.limits(tool.build_seconds), env=tool.env,
                                mounts=tool.mounts(), uid=uid)
            assert built.ok, f"{name} did not build: {built.stderr[-2000:]}"
        return sandbox.run(list(tool.run), workdir, tool.limits(wall_seconds), env=tool.env, mounts=tool.mounts(),
                           uid=uid)


def assert_contained(name: str, outcome: sandbox.Outcome) -> None:
    output = outcome.stdout + outcome.stderr
    assert "ESCAPED" not in output, f"{name}: the attack got through: {output[-3000:]}"


def processes_with(token: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if token.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class Listeners:
    """Host sockets the sockets attack aims at, recording every connection or datagram they get."""

    def __init__(self, tmp: Path):
        self.reached: list[str] = []
        self.sockets: list[socket.socket] = []
        self.paths: list[Path] = []
        self.tcp = self._listen(socket.AF_INET, ("127.0.0.1", 0), "tcp")
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.sockets.append(self.udp)
        threading.Thread(target=self._datagrams, daemon=True).start()
        self.abstract = f"dscoder-test-{uuid.uuid4().hex}"
        self._listen(socket.AF_UNIX, "\0" + self.abstract, "abstract")
        for directory in [Path("/run"), Path("/run/lock"), Path("/var/tmp"), tmp]:
            if directory.is_dir() and os.access(directory, os.W_OK):
                path = directory / f"dscoder-test-{uuid.uuid4().hex[:12]}.sock"
                self._listen(socket.AF_UNIX, str(path), f"path {path}")
                path.chmod(0o777)
                self.paths.append(path)

    def _listen(self, family: int, address, label: str) -> socket.socket:
        server = socket.socket(family, socket.SOCK_STREAM)
        server.bind(address)
        server.listen()
        self.sockets.append(server)
        threading.Thread(target=self._accept, args=(server, label), daemon=True).start()
        return server

    def _accept(self, server: socket.socket, label: str) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.reached.append(label)
            conn.sendall(b"answer")
            conn.close()

    def _datagrams(self) -> None:
        while True:
            try:
                self.udp.recv(64)
            except OSError:
                return
            self.reached.append("udp")

    def values(self) -> dict[str, str]:
        return {"TCP_PORT": str(self.tcp.getsockname()[1]), "UDP_PORT": str(self.udp.getsockname()[1]),
                "ABSTRACT": self.abstract, "PATHS": repr([str(p) for p in self.paths])}

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


@pytest.fixture
def host(tmp_path):
    """Canaries the attacks look for (world-readable files in home, /srv, /opt, /var/tmp,
    /run, the host /tmp and the checkout), a canary directory for the link tricks, sockets to
    reach, and the placeholders the attack programs are filled with."""
    token = uuid.uuid4().hex
    planted: list[Path] = []
    for directory in [Path.home(), Path("/srv"), Path("/opt"), Path("/var/tmp"), Path("/run"), tmp_path, CHECKOUT]:
        if directory.is_dir() and os.access(directory, os.W_OK):
            canary = directory / f"dscoder-canary-{token}"
            canary.write_text("SECRET-" + token)
            canary.chmod(0o644)
            planted.append(canary)
    canary_dir = tmp_path / "canary-dir"
    canary_dir.mkdir()
    (canary_dir / "keep").write_text(token)
    canary_dir.chmod(0o755)
    tmp_path.chmod(0o755)
    listeners = Listeners(tmp_path)
    values = {"TOKEN": token, "CHECKOUT": str(CHECKOUT), "CANARY_DIR": str(canary_dir),
              "CANARY_FILE": str(canary_dir / "keep"), **listeners.values()}
    yield {"values": values, "token": token, "canary_dir": canary_dir, "listeners": listeners, "planted": planted}
    listeners.close()
    for canary in planted:
        canary.unlink(missing_ok=True)
    for leftover in processes_with(token):
        os.kill(leftover, 9)


@pytest.mark.parametrize("name", attack_params("contained"))
def test_attack_is_contained(isolated, host, name):
    survivor = subprocess.Popen(["sleep", "30"])  # what kill(-1) would take with it on the host
    try:
        outcome = run_attack(name, host["values"])
        assert_contained(name, outcome)
        token = host["token"]
        assert survivor.poll() is None, "a host process was killed"
        written = [p for p in [Path("/"), Path("/usr"), Path("/usr/local/bin"), Path("/etc"), Path("/root"),
                               Path("/home"), Path("/var/tmp"), Path("/tmp"), Path("/opt"), CHECKOUT, Path.home()]
                   if (p / f"dscoder-escape-{token}").exists()]
        for path in written:
            (path / f"dscoder-escape-{token}").unlink()
        assert not written, f"files written outside the sandbox in {written}"
        assert not host["listeners"].reached, f"host sockets reached: {host['listeners'].reached}"
        assert (host["canary_dir"] / "keep").read_text() == token, "the canary was changed through a link"
        assert os.stat(host["canary_dir"]).st_uid == os.getuid(), "the canary was chowned through a link"
        assert not processes_with(token), "a process of the sample outlived it"
        if name == "output_flood.py":
            assert len(outcome.stdout) <= 2 * sandbox.Limits.output_bytes
    finally:
        survivor.kill()
        survivor.wait()


@pytest.fixture(params=["kernel", "watchdog"])
def enforcement(request, isolated, monkeypatch):
    """Who enforces the whole-sample caps. `kernel`: a cgroup per sample (memory, pids) and a
    size-capped tmpfs scratch, where this machine allows them. `watchdog`: what a machine
    without them gets (no cgroup delegation, not root), forced here by switching both off; the
    same attacks must be stopped with the same limit named."""
    if request.param == "watchdog":
        monkeypatch.setattr(sandbox, "_ISOLATION", dataclasses.replace(isolated, cgroups=False, tmpfs=False))
        monkeypatch.setattr(scratch, "_CAN_MOUNT", False)
    elif not isolated.cgroups:
        pytest.skip(f"no cgroup per sample on this machine ({cgroups.why_unavailable()}): "
                    "the watchdog variant is what runs here")
    elif not isolated.tmpfs:
        pytest.skip("no tmpfs mount on this machine (not root): the watchdog variant is what runs here")
    return request.param


@pytest.mark.parametrize("name", attack_params("limit="))
def test_attack_is_stopped_at_a_named_limit(enforcement, name):
    wanted = header(ATTACKS / name)["expect"].removeprefix("limit=").split("|")
    outcome = run_attack(name, wall_seconds=30.0)
    assert_contained(name, outcome)
    assert not outcome.ok, f"{name} ran to a clean end: {outcome}"
    assert outcome.limit is not None and any(outcome.limit.startswith(w) for w in wanted), \
        f"{name}: expected the {' or '.join(wanted)} limit named, got limit={outcome.limit!r} " \
        f"rc={outcome.returncode} timed_out={outcome.timed_out} stderr={outcome.stderr[-500:]}"
    print(f"{name} ({enforcement}): {outcome.limit} after {outcome.seconds:.1f}s")


@pytest.mark.parametrize("name", attack_params("timeout"))
def test_attack_is_stopped_by_the_clock_and_leaves_nothing(isolated, name):
    with sandbox.UidLease() as lease:
        outcome = run_attack(name, wall_seconds=2.0, uid=lease.uid)
        assert outcome.timed_out, outcome
        left = [e.name for e in os.scandir("/proc") if e.name.isdigit() and _uid_of(e.name) == lease.uid]
    assert not left or not sandbox.isolation().drop_uid, f"processes of the sandbox uid left: {left}"


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def test_nothing_persists_from_one_sample_to_the_next(isolated, host):
    """Two samples on the same worker (the same uid): the second finds nothing of the first."""
    with sandbox.UidLease() as lease:
        first = run_attack("persist_write.py", host["values"], uid=lease.uid)
        assert first.ok, first
        second = run_attack("persist_read.py", host["values"], uid=lease.uid)
    assert_contained("persist_read.py", second)
    assert second.ok, second


def test_every_attack_program_declares_its_expectation():
    for path in ATTACKS.iterdir():
        info = header(path)
        assert info.get("attack") and re.fullmatch(r"contained|timeout|limit=[a-z|]+", info.get("expect", "")), path


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


@pytest.mark.slow
def test_memory_attacks_on_every_worker_leave_the_host_its_floor(isolated):
    """With as many workers as cores, each running a memory attack at once (twice over),
    the host's available memory never drops below its level before the battery minus one
    sample cap per worker and 512 MiB of slack: the floor the README states."""
    from concurrent.futures import ThreadPoolExecutor

    workers = len(os.sched_getaffinity(0))
    names = ["memory_many_processes.py", "memory_one_process.py", "tmpfs_fill.py", "memory_node_buffers.js"]
    before = _available_bytes()
    floor = before - workers * sandbox.Limits.memory_bytes - (512 << 20)
    lowest = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            lowest[0] = min(lowest[0], _available_bytes())
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(lambda n: run_attack(n, wall_seconds=30.0), names * 2))
    finally:
        done.set()
        watcher.join()
    print(f"available before {before / 2**30:.2f} GiB, lowest {lowest[0] / 2**30:.2f} GiB, "
          f"floor {floor / 2**30:.2f} GiB ({workers} workers)")
    assert all(o.limit for o in outcomes), [o.limit for o in outcomes]
    assert lowest[0] >= floor
