"""How each benchmark language is built and run: one small table, one probe per toolchain.

A language whose toolchain is missing is reported as unavailable with the reason (and the
evaluation then skips it, never scoring it 0%). Commands follow MultiPL-E's own
evaluators (the harness DeepSeek-Coder's multilingual numbers come from): Java with
assertions on, C# with DEBUG so `Debug.Assert` is live, Go as a test file run by
`go test`, TypeScript type-checked and compiled by `tsc` then run by node. Mono's failed
`Debug.Assert` prints a trace and exits 0, so C# is judged by its output too.

MultiPL-E's other languages run as its `eval_*.py` do: `lua`, `ruby`, `Rscript`, `perl`,
`racket` and `julia` on the file, Swift built by `swiftc`, Scala by `scalac` and run by
`scala`, D built with its `unittest` blocks on (MultiPL-E: `rdmd -unittest`; here LDC, dmd or
gdc, whichever is installed). Each fails by a non-zero exit, as there; rackunit only prints a
failed check and exits 0 (MultiPL-E fails any output on stderr), so the Racket checks count
their own failures instead (`harness`). A language whose test library is missing (luaunit,
Ruby's test-unit, Perl's Test::Deep, rackunit) is unavailable like one whose compiler is.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.execute import sandbox
from dscoder.errors import UserError

# MultiPL-E's Java prompts `import org.javatuples.*` (8 problems return Pair/Triplet). The
# javatuples jar is on Maven Central, which this project cannot reach at run time, so the
# subset those problems use is written here; set DSCODER_JAVATUPLES_JAR to use the real jar.
_JAVATUPLES = {
    "Pair": ("A", "B"),
    "Triplet": ("A", "B", "C"),
}


def _javatuple_source(name: str, types: tuple[str, ...]) -> str:
    n = len(types)
    generic = ", ".join(types)
    fields = "\n".join(f"    private final {t} v{i};" for i, t in enumerate(types))
    params = ", ".join(f"{t} v{i}" for i, t in enumerate(types))
    args = ", ".join(f"v{i}" for i in range(n))
    assigns = " ".join(f"this.v{i} = v{i};" for i in range(n))
    getters = "\n".join(f"    public {t} getValue{i}() {{ return v{i}; }}" for i, t in enumerate(types))
    values = ", ".join(f"v{i}" for i in range(n))
    shown = ' + ", " + '.join(f"v{i}" for i in range(n))
    wildcard = ", ".join("?" * n)
    return f"""package org.javatuples;
import java.util.*;
public final class {name}<{generic}> {{
{fields}
    public {name}({params}) {{ {assigns} }}
    public static <{generic}> {name}<{generic}> with({params}) {{ return new {name}<>({args}); }}
{getters}
    public List<Object> toList() {{ return Arrays.asList({values}); }}
    @Override public boolean equals(Object o) {{
        return o instanceof {name} && toList().equals((({name}<{wildcard}>) o).toList());
    }}
    @Override public int hashCode() {{ return toList().hashCode(); }}
    @Override public String toString() {{ return "[" + {shown} + "]"; }}
}}
"""


def _java_support() -> dict[str, str | bytes]:
    jar = os.environ.get("DSCODER_JAVATUPLES_JAR")
    if jar:
        return {"lib/javatuples.jar": Path(jar).read_bytes()}
    return {f"org/javatuples/{name}.java": _javatuple_source(name, types) for name, types in _JAVATUPLES.items()}


@dataclass(frozen=True)
class Toolchain:
    """`build` and `run` are argv lists run inside the work directory; `needs` are the
    executables that must exist for the language to be available."""

    name: str
    filename: str
    run: tuple[str, ...]
    build: tuple[str, ...] | None = None
    needs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    address_space_bytes: int | None = 4 * sandbox.GiB  # per process; None where the runtime reserves huge maps
    processes: int = 64
    build_seconds: float = 60.0
    support: str | None = None  # name of a function giving extra files (e.g. the javatuples subset)
    # Output that means "failed" even with exit code 0 (mono's Debug.Assert only prints), and
    # output of the run step that means the program did not build (`go test` compiles and runs).
    failure_markers: tuple[str, ...] = ()
    build_failure_markers: tuple[str, ...] = ()
    # A command that must succeed for the language to be available (its test library is
    # installed), and what is missing when it does not.
    probe: tuple[str, ...] = ()
    probe_missing: str = ""

    def limits(self, wall_seconds: float) -> sandbox.Limits:
        return sandbox.Limits(wall_seconds=wall_seconds, cpu_seconds=int(wall_seconds * 2) + 5,
                              address_space_bytes=self.address_space_bytes, processes=self.processes)

    def support_files(self) -> dict[str, str | bytes]:
        return _java_support() if self.support == "javatuples" else {}

    def missing(self) -> str | None:
        """Why this language cannot run here, or None."""
        absent = [exe for exe in self.needs if _resolve(exe) is None]
        if absent:
            return f"{', '.join(absent)} not found on PATH"
        if self.probe and not _probe(self.probe):
            return self.probe_missing or f"{' '.join(self.probe)} failed"
        return None

    def mounts(self) -> tuple[Path, ...]:
        return _mounts(self.needs)


def _resolve(exe: str) -> str | None:
    return exe if os.path.isabs(exe) and os.access(exe, os.X_OK) else shutil.which(exe)


@functools.lru_cache(maxsize=None)
def _probe(argv: tuple[str, ...]) -> bool:
    """Whether our own fixed command `argv` (never model code) succeeds here."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# D compilers by preference, with the flag that compiles the unittest blocks in (MultiPL-E uses
# dmd's `rdmd -unittest`; Debian packages LDC and gdc, not dmd).
_D_COMPILERS = (("ldc2", ("-unittest", "-of=main")), ("dmd", ("-unittest", "-of=main")),
                ("gdc", ("-funittest", "-o", "main")))


def _d_build() -> tuple[str, ...]:
    for exe, flags in _D_COMPILERS:
        if shutil.which(exe):
            return (exe, *flags, "main.d")
    return ("ldc2", "-unittest", "-of=main", "main.d")


@functools.lru_cache(maxsize=None)
def _rust_sysroot() -> str | None:
    """rustup installs `rustc` as a proxy that needs ~/.rustup; the sandbox calls the real
    compiler inside the active toolchain's sysroot instead."""
    if shutil.which("rustc") is None:
        return None
    try:
        return subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=None)
def _mounts(needs: tuple[str, ...]) -> tuple[Path, ...]:
    """Install prefixes of toolchains that live outside the sandbox's allowlisted system
    directories (pyenv and rustup under a home directory, a Go under /opt), to be bound
    back read-only; a prefix inside the allowlist is already visible and is left out."""
    prefixes: set[Path] = set()
    for exe in needs:
        path = _resolve(exe)
        if path is None:
            continue
        prefixes.add(Path(os.path.realpath(path)).parent.parent)
    prefixes.update({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    outside = {p for p in prefixes if not any(p.is_relative_to(d) for d in sandbox.SYSTEM_DIRS)}
    return tuple(sorted(p for p in outside if not any(p != q and p.is_relative_to(q) for q in outside)))


def _rustc() -> str:
    root = _rust_sysroot()
    return os.path.join(root, "bin", "rustc") if root else "rustc"


def _table() -> dict[str, Toolchain]:
    java_cp = "lib/javatuples.jar:." if os.environ.get("DSCODER_JAVATUPLES_JAR") else "."
    big_runtime = dict(address_space_bytes=None, processes=512)  # JVM/Go/.NET/V8 reserve huge virtual maps and many threads
    return {
        "python": Toolchain("python", "main.py", (sys.executable, "main.py"), needs=(sys.executable,),
                            env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}),
        # -fsanitize=return: flowing off the end of a non-void function is undefined behaviour
        # that often "returns" the right register by luck; here it aborts, so an empty body
        # cannot pass, while correct code with an unreachable fall-through still does.
        "cpp": Toolchain("cpp", "main.cpp", ("./main",),
                         build=("g++", "-std=c++17", "-O1", "-fsanitize=return", "-fno-sanitize-recover=all",
                                "-o", "main", "main.cpp"), needs=("g++",)),
        "java": Toolchain("java", "Problem.java", ("java", "-ea", "-Xmx1g", "-Xss64m", "-cp", java_cp, "Problem"),
                          build=("sh", "-c", f"javac -nowarn -cp {java_cp} -d . $(find . -name '*.java')"),
                          needs=("javac", "java"), support="javatuples", **big_runtime),
        "js": Toolchain("js", "main.js", ("node", "--max-old-space-size=1024", "main.js"), needs=("node",),
                        **big_runtime),
        "ts": Toolchain("ts", "main.ts", ("node", "--max-old-space-size=1024", "main.js"),
                        build=("tsc", "--target", "es2020", "--lib", "es2020", "--skipLibCheck", "main.ts"),
                        needs=("tsc", "node"), **big_runtime),
        "go": Toolchain("go", "main_test.go", ("go", "test", "-count=1", "main_test.go"), needs=("go",),
                        env={"GOCACHE": "{work}/.gocache", "GOPATH": "{work}/.gopath", "GOTOOLCHAIN": "local"},
                        build_failure_markers=("[build failed]", "[setup failed]"), **big_runtime),
        "rs": Toolchain("rs", "main.rs", ("./main",), build=(_rustc(), "--edition", "2021", "-O", "-o", "main", "main.rs"),
                        needs=(_rustc(), "cc")),
        "sh": Toolchain("sh", "main.sh", ("bash", "main.sh"), needs=("bash",)),
        "php": Toolchain("php", "main.php", ("php", "main.php"), needs=("php",)),
        "cs": Toolchain("cs", "Program.cs", ("mono", "--debug", "Program.exe"),
                        build=("mcs", "-d:DEBUG", "-r:System.Numerics.dll", "-out:Program.exe", "Program.cs"),
                        needs=("mcs", "mono"), env={"MONO_TRACE_LISTENER": "Console.Error"},
                        failure_markers=("System.Diagnostics.DefaultTraceListener.Fail", "Unhandled Exception"),
                        **big_runtime),
        "lua": Toolchain("lua", "main.lua", ("lua", "main.lua"), needs=("lua",),
                         probe=("lua", "-e", "require('luaunit')"),
                         probe_missing="luaunit is not installed (Debian: lua-unit)"),
        "rb": Toolchain("rb", "main.rb", ("ruby", "main.rb"), needs=("ruby",),
                        probe=("ruby", "-e", "require 'test/unit'; Test::Unit::AutoRunner.need_auto_run = false"),
                        probe_missing="Ruby's test-unit is not installed (Debian: ruby-test-unit)"),
        "r": Toolchain("r", "main.r", ("Rscript", "main.r"), needs=("Rscript",)),
        "pl": Toolchain("pl", "main.pl", ("perl", "main.pl"), needs=("perl",),
                        probe=("perl", "-MTest::Deep", "-e", "1"),
                        probe_missing="Perl's Test::Deep is not installed (Debian: libtest-deep-perl)"),
        "rkt": Toolchain("rkt", "main.rkt", ("racket", "main.rkt"), needs=("racket",),
                         probe=("racket", "-l", "racket/base", "-l", "rackunit", "-e", "(void)"),
                         probe_missing="rackunit is not installed (Debian: racket)"),
        # Julia reserves a large virtual heap up front; Swift's compiler is LLVM (both untested here).
        "jl": Toolchain("jl", "main.jl", ("julia", "main.jl"), needs=("julia",), **big_runtime),
        "swift": Toolchain("swift", "main.swift", ("./main",), build=("swiftc", "main.swift", "-o", "main"),
                           needs=("swiftc",), **big_runtime),
        "d": Toolchain("d", "main.d", ("./main", "--DRT-testmode=run-main"), build=_d_build(), needs=(_d_build()[0],)),
        "scala": Toolchain("scala", "Problem.scala", ("scala", "-J-Xmx1g", "-J-Xss64m", "-cp", ".", "Problem"),
                           # The compiler is a short-lived JVM: its quick JIT tier alone halves its CPU time.
                           build=("scalac", "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-nowarn", "-d", ".",
                                  "Problem.scala"), needs=("scalac", "scala"),
                           build_seconds=120.0, **big_runtime),
    }


def toolchain(language: str) -> Toolchain:
    table = _table()
    if language not in table:
        raise UserError(f"unknown language {language!r}; known: {', '.join(table)}")
    return table[language]


def available() -> dict[str, str | None]:
    """Every language with None (runs here) or the reason it cannot."""
    return {name: tool.missing() for name, tool in _table().items()}
