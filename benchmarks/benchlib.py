"""What the benchmark scripts share: contestants in worker processes, median (range), the CPU's name.

Each side of a speed comparison runs in its own process, so its peak memory is its own and
neither side's threads, caches or imports warm the other; the driver alternates them (ours,
peer, ours, peer...) by writing a command line to the worker's stdin and reading one JSON
reply from its stdout. The worker's stderr goes to a log that is shown if it dies.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
from pathlib import Path


def rss_mib() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def span(values: list[float], fmt: str) -> str:
    """'median (min-max)': how every speed is reported (this machine is noisy)."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


class WorkerProcess:
    """A contestant in a process of its own, driven one JSON line at a time."""

    def __init__(self, name: str, command: list[str], log: Path):
        self.name, self.log = name, log
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log.open("w"), text=True)
        self.ready = self.reply()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"{self.name} worker exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.reply()

    def finish(self) -> float:
        """Stop the worker; its peak memory (MiB) as it reported it."""
        peak = self.ask("done")["peak_mib"]
        self.proc.wait()
        return peak
