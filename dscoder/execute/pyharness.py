"""The harness a checked Python program runs under, inside the sandbox (written there as main.py).

A benchmark program is a solution (the model's code, in its prompt's surroundings) and the
benchmark's checks. Exit status 0 alone does not prove the checks passed: `os._exit(0)` in the
function, an `atexit` or `sys.excepthook` that exits 0, or `sys.exit(0)` all end the process
"cleanly" before the checks finish. So this script runs the program and, only when the checks
have run to their end in this process, prints a line holding a per-run secret (`MARKER` +
token) that the host requires (`dscoder.execute.harness`).

Why each step:
- The token comes on stdin, read (and the pipe drained) before any sample code runs; it is
  never in the environment (a popped variable still shows in /proc/self/environ) nor in a
  file (the sample can read its own directory). It lives only in a local of `main`.
- Solution and checks are compiled and run by `main` itself in a fresh `__main__` module, so
  every way out of them (an exception, `SystemExit` from `sys.exit`, a failed assert) comes
  back here and ends the process with status 1 through `os._exit`: no atexit handler,
  excepthook or finalizer of the sample runs after the checks, and none can change the status.
- The marker goes to a duplicate of the original stdout taken at start (a sample that
  redirects or closes fd 1 cannot hide or fake the order), and only from the process that
  started the checks (a forked child running the checks with guessed answers cannot print it).
- Returns of the benchmark's entry points are checked to be plain data (exact builtin types,
  recursively) before the checks compare them: an object whose `__eq__` always says True, or
  an `int`/`str`/`bool` subclass overriding any operator, is refused with a reason on stderr,
  as EvalPlus compares outputs with their types. Only the outermost call is wrapped: while it
  runs, the entry point's global name is bound to the sample's own function again, so
  recursion goes straight to it (no extra frame per level, the recursion limit is unchanged).

Residual risk, stated rather than hidden: code that deliberately introspects this process
(walking frames up to `main` with `sys._getframe`, `gc.get_referrers`, ctypes or
/proc/self/mem) can find the token and print it. Nothing in-process can stop that; the sandbox
makes it a deliberate, harness-specific attack rather than an accident of exiting early.

This file imports only the standard library: it runs under the sandbox's interpreter with
nothing of dscoder importable. The host reads its text (`harness.python_harness_source`).
"""

import builtins
import collections
import os
import re
import sys
import traceback
import types

PROGRAM_FILE = "program.py"
MARKER = "dscoder: checks completed "
# The line between a program's solution and its checks, naming the entry points whose returns
# must be plain data. A comment: the program stays a valid standalone Python program.
SEPARATOR = "#<dscoder-checks guard={names}>"
SEPARATOR_PATTERN = re.compile(r"^#<dscoder-checks guard=([A-Za-z_0-9,]*)>$", re.M)

SCALARS = frozenset(map(id, (int, float, complex, bool, str, bytes, type(None))))
CONTAINERS = frozenset(map(id, (list, tuple, dict, set, frozenset)))
# Standard-library dict subclasses that canonical solutions return (MBPP 40 and 88 return a
# Counter where the checks compare with a dict literal). OrderedDict and defaultdict are C
# types nobody can patch; Counter is a Python class, accepted only while its class dict is
# the one captured before the sample ran (a sample could set `Counter.__eq__`).
_COUNTER = collections.Counter
_COUNTER_STATE = (dict(vars(_COUNTER)), _COUNTER.__mro__)
DICT_LIKE = frozenset(map(id, (dict, collections.OrderedDict, collections.defaultdict)))
# The builtins the guard uses, bound now: the sample shares the `builtins` module and could
# replace `builtins.type` with something that calls every value an int.
_type, _id, _set, _len, _all, _zip, _getattr, _callable = type, id, set, len, all, zip, getattr, callable
_dict, _dict_keys, _dict_values, _vars = dict, dict.keys, dict.values, vars


class NotPlainData(Exception):
    """An entry point returned something other than plain data."""


def split(source):
    """(solution, checks, guarded names, line number where the checks start) or None when
    `source` has no separator (a plain program). The last separator is the harness's own: the
    checks, which follow it, are the benchmark's text and never contain one."""
    found = None
    for found in SEPARATOR_PATTERN.finditer(source):
        pass
    if found is None:
        return None
    names = tuple(n for n in found.group(1).split(",") if n)
    newline = source.find("\n", found.end())
    checks_start = len(source) if newline == -1 else newline + 1
    return source[:found.start()], source[checks_start:], names, source.count("\n", 0, checks_start)


def _counter_intact():
    now = _vars(_COUNTER)
    state, mro = _COUNTER_STATE
    return (_len(now) == _len(state) and _all(now.get(k) is v for k, v in state.items())
            and _len(_COUNTER.__mro__) == _len(mro) and _all(a is b for a, b in _zip(_COUNTER.__mro__, mro)))


def not_plain(value):
    """None when `value` is plain data, else the name of the first type that is not. Types are
    compared by identity (a metaclass may override `==`), cycles are followed once, and the
    walk is iterative (deep nesting cannot exhaust the recursion limit)."""
    stack, seen = [value], _set()
    while stack:
        item = stack.pop()
        kind = _type(item)
        if _id(kind) in SCALARS:
            continue
        if _id(kind) in CONTAINERS or _id(kind) in DICT_LIKE or (kind is _COUNTER and _counter_intact()):
            if _id(item) in seen:
                continue
            seen.add(_id(item))
            if _id(kind) in CONTAINERS and kind is not _dict:
                stack.extend(item)  # the builtin iterator of an exact list/tuple/set/frozenset
            else:
                stack.extend(_dict_keys(item))
                stack.extend(_dict_values(item))
            continue
        return f"{_getattr(kind, '__module__', '?')}.{_getattr(kind, '__qualname__', '?')}"
    return None


def _guard(namespace, name, refusals):
    """The entry point `name`, wrapped so that each outermost call's return is checked."""
    original = namespace[name]

    def guarded(*args, **kwargs):
        nonlocal original
        namespace[name] = original  # the sample's own (recursive) calls reach its function directly
        try:
            value = original(*args, **kwargs)
        finally:
            rebound = namespace.get(name)
            if rebound is not original and rebound is not guarded and _callable(rebound):
                original = rebound  # the sample rebound its name (a memoised version, say): follow it
            namespace[name] = guarded
        kind = not_plain(value)
        if kind is not None:
            reason = (f"dscoder: {name}() returned a {kind}, not plain data (exact int, float, complex, bool, "
                      f"str, bytes, None, list, tuple, dict, set, frozenset): refused, as the expected values "
                      f"are plain data")
            refusals.append(reason)
            raise NotPlainData(reason)
        return value

    return guarded


def _report(error, print_exception, stderr):
    """Say why the checks did not finish, without trusting the sample's excepthook."""
    try:
        if isinstance(error, SystemExit):
            stderr.write(f"dscoder: the program exited (SystemExit({error.code!r})) before its checks finished; "
                         f"a pass needs the checks to run to their end\n")
        else:
            tb = error.__traceback__
            print_exception(type(error), error, tb.tb_next if tb is not None else None, file=stderr)
        stderr.flush()
    except BaseException:
        pass


def _read_token():
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 256)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()


def main():
    # Everything used after the sample starts is bound here, before it can replace module
    # attributes or builtins (an `exec` that does nothing would skip the checks).
    write, exit_, getpid, flush_fd = os.write, os._exit, os.getpid, os.dup(1)
    run, compile_ = exec, compile
    stdout, stderr, print_exception = sys.stdout, sys.stderr, traceback.print_exception
    token = _read_token()
    if not token:
        stderr.write("dscoder harness: no checks token on stdin (run through dscoder.execute)\n")
        stderr.flush()
        exit_(2)
    start_pid = getpid()
    path = os.path.abspath(PROGRAM_FILE)
    with open(path, encoding="utf-8") as f:
        parts = split(f.read())
    if parts is None:
        stderr.write(f"dscoder harness: {PROGRAM_FILE} has no checks separator\n")
        stderr.flush()
        exit_(2)
    solution, checks, guarded, checks_line = parts
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace.update(__file__=path, __builtins__=builtins, __cached__=None)
    sys.modules["__main__"] = module
    sys.argv[:] = [path]
    refusals = []
    try:
        run(compile_(solution, path, "exec", dont_inherit=True), namespace)
        for name in guarded:
            if _callable(namespace.get(name)):
                namespace[name] = _guard(namespace, name, refusals)
        run(compile_("\n" * checks_line + checks, path, "exec", dont_inherit=True), namespace)
    except BaseException as error:  # SystemExit too: leaving before the end of the checks is no pass
        _report(error, print_exception, stderr)
        exit_(1)
    if refusals:  # refused even if the checks caught the exception
        stderr.write(refusals[0] + "\n")
        exit_(1)
    if getpid() != start_pid:  # a forked child finished the checks: only the first process may say so
        exit_(1)
    for stream in (stdout, stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    write(flush_fd, ("\n" + MARKER + token + "\n").encode())
    exit_(0)


if __name__ == "__main__":
    main()
