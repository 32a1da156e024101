"""The code that runs a user's tests on one candidate, inside the sandbox, beside the candidate.

A verified candidate is one program (`dscoder.verify.program`): the line that loads this file,
then the candidate's code, then the harness's separator and one call of the function `prepare`
returns (bound under a name drawn at random for that program).
`dscoder.execute.harness` runs it: the candidate first, then that call, which runs the tests
and returns only if every check passed; the harness then prints its end-of-checks marker, so a
candidate that exits early (`os._exit(0)`, `sys.exit(0)`, an atexit hook) or prints a fake
marker does not pass (the harness's own rule).

The candidate runs *before* the tests, in the same process, so it could change what the
tests see. `prepare` runs before the candidate and takes what the tests need while it is
still untouched; `run` puts it back before any check:
- builtins: the tests get a copy of the builtins taken before the candidate ran, so
  `builtins.len = ...`, `builtins.AssertionError = ...` or a global `abs` in the candidate's
  module change nothing the tests call (the `assert` statement raises the interpreter's own
  AssertionError whatever the name is bound to);
- modules: every module the tests import is imported before the candidate runs, and its
  namespace, its classes' namespaces and its functions' code are restored before the tests
  (so `unittest.TestCase.assertEqual = lambda *a: None` or `math.isclose = ...` are undone);
  `sys.path`, `sys.meta_path` and `sys.path_hooks` are restored without the work directory,
  so a `unittest.py` the candidate writes beside itself is never imported;
- a thread the candidate left running when the tests start fails the run (it could change
  state while the checks run);
- this file's own code runs with a copy of the builtins taken before the candidate ran (its
  globals are its own, never the candidate's module), and what it uses of `os`, `io`, `sys`
  and `types` is bound then too; the results go to a duplicate of stderr taken then, and a
  failed run ends through the `os._exit` taken then.

Each check runs on its own (a failed one does not stop the next), so the host can rank
candidates that pass none of the suites whole by how many checks they pass. That count is
read from the run's stderr and is advisory: a candidate that fails can print lines of its
own, so it never makes a candidate pass; only the harness's marker does.

Residual risk, as in `pyharness`: a candidate written against this file (reading its own
source for the runner's name, walking the runner's closure, `gc.get_objects()`, ctypes) can
reach the snapshots or skip the checks. That is
a deliberate attack on this harness, not a way to pass by accident or by a generic trick.

Standard library only: this file runs under the sandbox's interpreter with nothing of dscoder
importable. The host reads its text (`dscoder.verify.program`).
"""

PREFIX = "dscoder verify: "
RUNNER_FILE = "<dscoder-verify>"  # the file name this code is compiled under in the program
FAILURE_LINES = 4  # failures reported by name (the verdict keeps only the tail of stderr)
LINE_CHARS = 160


def prepare(plan, namespace):
    """Take what the tests need before the candidate runs (`namespace` is the module it runs
    in); return the function that runs the checks on it afterwards."""
    import builtins
    import importlib
    import io
    import os
    import sys
    import types

    pristine = dict(builtins.__dict__)
    exit_, write, err_fd, modules = os._exit, os.write, os.dup(2), sys.modules
    string_io, module_type, current_frames = io.StringIO, types.ModuleType, sys._current_frames
    here = {os.path.realpath(p) for p in (os.getcwd(), os.path.dirname(os.path.abspath(sys.argv[0] or ".")))}
    clean_path = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) not in here]
    sys.path[:] = clean_path  # the candidate's own imports skip its directory too
    meta_path, path_hooks = list(sys.meta_path), list(sys.path_hooks)
    wanted = set(plan["imports"]) | ({"unittest"} if plan["unittest"] else set())
    for name in sorted(wanted):
        try:
            importlib.import_module(name)
        except BaseException:  # the tests fail on it themselves, with their own traceback
            pass
    saved = [(name, module, _snapshot(module, types.FunctionType)) for name, module in list(modules.items())
             if module is not None and name.split(".")[0] in wanted]
    subjects, origin = set(plan["subjects"]), plan["origin"]
    source = namespace.get("__file__")  # the candidate's file (program.py): where its tracebacks point

    def say(text):
        text = text.replace("\n", " ")
        if len(text) > LINE_CHARS:
            text = text[:LINE_CHARS - 3] + "..."
        write(err_fd, (PREFIX + text + "\n").encode("utf-8", "replace"))

    def run():
        if len(current_frames()) > 1:
            say("FAILED before the checks: a thread the candidate started is still running")
            say(f"0/{plan['checks']} checks passed")
            exit_(1)
        sys.meta_path, sys.path_hooks, sys.path = list(meta_path), list(path_hooks), list(clean_path)
        sys.path_importer_cache.clear()
        for name, module, state in saved:
            modules[name] = module
            _restore(module, state)
        tests = {"__builtins__": dict(pristine), "__name__": "__main__"}
        for name, value in list(namespace.items()):
            if not name.startswith("__") and (name not in pristine or name in subjects):
                tests[name] = value
        for alias in plan["aliases"]:
            module = module_type(alias)
            module.__dict__.update({k: v for k, v in tests.items() if not k.startswith("__")})
            modules[alias] = module
        passed, failures, aborted = 0, [], None
        for step in plan["steps"]:
            kind = step["kind"]
            if kind == "setup":
                if aborted is None:
                    try:
                        exec(_code(step, origin, "exec"), tests)
                    except BaseException as error:
                        aborted = f"the tests' setup at line {step['line']} failed ({_why(error, source)})"
                        failures.append(f"{origin}:{step['line']}: {aborted}")
                continue
            if aborted is not None:
                continue  # counted as failed below: only passes are counted
            try:
                ok, reason = _CHECKS[kind](step, tests, origin, sys, string_io)
            except BaseException as error:
                ok, reason = False, _why(error, source)
            if ok:
                passed += 1
            else:
                failures.append(f"{step['label']} ({origin}:{step['line']}): {reason}")
        write(err_fd, b"\n")  # the report starts on a line of its own, whatever the candidate left unfinished
        for line in failures[:FAILURE_LINES]:
            say("FAILED " + line)
        if len(failures) > FAILURE_LINES:
            say(f"... and {len(failures) - FAILURE_LINES} more failures")
        say(f"{passed}/{plan['checks']} checks passed")
        if passed != plan["checks"] or failures:
            exit_(1)

    return run


def _code(step, origin, mode):
    """A step compiled at its own line of the tests, so a traceback names the right one."""
    return compile("\n" * (step["line"] - 1) + step["source"], origin, mode, dont_inherit=True)


def _why(error, source=None):
    """`ValueError: 1 (program.py:3 in f)`: the error, and the innermost line of the candidate's own
    code (the file `source`) it passed through, if any."""
    text = str(error)
    why = f"{type(error).__name__}: {text}" if text else type(error).__name__
    tb, where = error.__traceback__, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if source is not None and code.co_filename == source:
            where = f"{source.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return f"{why} ({where})" if where else why


def _snapshot(module, function_type):
    """A module's namespace, its classes' namespaces and its functions' code, as they are now."""
    names = dict(module.__dict__)
    classes, functions = [], []
    for value in names.values():
        if type(value) is function_type:
            functions.append((value, value.__code__, value.__defaults__, value.__kwdefaults__))
        elif isinstance(value, type) and getattr(value, "__module__", None) == module.__name__:
            attributes = dict(value.__dict__)
            classes.append((value, attributes))
            functions += [(f, f.__code__, f.__defaults__, f.__kwdefaults__) for f in attributes.values()
                          if type(f) is function_type]
    return names, classes, functions


def _restore(module, state):
    names, classes, functions = state
    current = module.__dict__
    for key in [k for k in current if k not in names]:
        del current[key]
    current.update(names)
    for cls, attributes in classes:
        for key in [k for k in cls.__dict__ if k not in attributes]:
            try:
                type.__delattr__(cls, key)
            except (AttributeError, TypeError):
                pass
        for key, value in attributes.items():
            if cls.__dict__.get(key) is not value:
                try:
                    type.__setattr__(cls, key, value)
                except (AttributeError, TypeError):
                    pass
    for function, code, defaults, kwdefaults in functions:
        function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults


# ---- the kinds of check: each returns (passed, why not) ------------------------------------------

def _statement(step, tests, origin, sys, string_io):
    """An `assert` (or a call of a test helper) of a test file: passes when it raises nothing."""
    exec(_code(step, origin, "exec"), tests)
    return True, ""


def _close(got, want):
    """Equal within 1e-6 (relative, at least absolute): the float answers of docstring examples."""
    if type(want) is float and type(got) in (int, float):
        return abs(got - want) <= 1e-6 * max(1.0, abs(want))
    return False


def _example(step, tests, origin, sys, string_io):
    """A docstring example: its value (or what it prints) against the expected output; the value
    when the expected output is a Python literal, else the text, whitespace runs as one space."""
    buffer, saved = string_io(), sys.stdout
    sys.stdout = buffer
    try:
        if step["expression"]:
            got = eval(_code(step, origin, "eval"), tests)
        else:
            exec(_code(step, origin, "exec"), tests)
            got = None
    finally:
        sys.stdout = saved
    if "value" in step and (got == step["value"] or _close(got, step["value"])):
        return True, ""
    shown = buffer.getvalue() + (repr(got) if got is not None else "")
    if " ".join(shown.split()) == " ".join(step["expected"].split()):
        return True, ""
    return False, f"expected {step['expected'].strip()}, got {shown.strip() or 'nothing'}"


def _function(step, tests, origin, sys, string_io):
    """A pytest-style `test_*` function, called with one parametrize case (or none)."""
    function = tests.get(step["name"])
    if not callable(function):
        return False, f"{step['name']} is not defined"
    function(**step.get("case", {}))
    return True, ""


def _method(step, tests, origin, sys, string_io):
    """One test method of a class: through unittest's own machinery for a TestCase, else called on
    an instance made without arguments (pytest's test classes)."""
    cls = tests.get(step["cls"])
    if not isinstance(cls, type):
        return False, f"class {step['cls']} is not defined"
    if not step["unittest"]:
        getattr(cls(), step["name"])()
        return True, ""
    import unittest

    result = unittest.TestResult()
    cls(step["name"]).run(result)
    problems = result.failures + result.errors
    if problems:
        return False, problems[0][1].strip().splitlines()[-1]
    if result.skipped:
        return False, f"skipped ({result.skipped[0][1]})"
    return (True, "") if result.testsRun == 1 else (False, "did not run")


_CHECKS = {"check": _statement, "example": _example, "function": _function, "method": _method}
