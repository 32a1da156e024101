"""EvalPlus's expected outputs, computed once in the sandbox, and the checks that compare with them.

EvalPlus (HumanEval+, MBPP+) has no written-out expected outputs: it runs the canonical solution on
every input and compares a sample's outputs with those, in the sample's own process. Computing them
there at verdict time would let model code reach them (patch the canonical function, or the
comparison). So:

- **Ground truth once, in the sandbox.** `oracles` runs each problem's canonical solution on its base
  and plus inputs inside `dscoder.execute.sandbox` (the data is outside input too), timing each call
  as EvalPlus does, and caches the result per task under `cache_dir()` keyed by the data file's
  SHA-256 (and this interpreter: timings and string hashes belong to it).
- **A safe encoding.** The sandboxed program writes outputs as tagged JSON (`{"tuple": [...]}`,
  `{"float": "nan"}`, `{"int": "0x..."}` for ints past 64 bits, sets, bytes, complex), which the host
  decodes strictly (an unknown tag or shape refuses the file) into plain values. Nothing is
  unpickled or evaluated on the host.
- **Literals in the test program.** `literal` writes a value back as Python source made only of
  literals (inf as `1e999`, nan as `(1e999*0)`, complex through `(0j).__class__`, the empty set as
  `{*()}`), so the expected values exist only as constants of the checks, built after each call
  returns: a sample cannot compute, reach or change them by name. An output too large to embed (the
  canonical `string_sequence(10**6)` is 7 MB; HumanEval+ holds 150 MB of such outputs) is compared
  through a 64-bit hash of a canonical form that respects Python equality (1 == 1.0, dict order),
  only where EvalPlus's verdict is plain equality for it.
- **Checks that use no names.** The comparison (`CHECKER`) runs inside a function of its own, so
  its helpers are locals a sample cannot rebind; it reaches types through literals (`(0.0).__class__`)
  and methods of builtin values (`x.__abs__()`), never `abs`, `type`, `len`, `math` or numpy, which a
  sample could have replaced in `builtins` or `sys.modules` before the checks run. Returns are plain
  data (the harness's guard), and dict subclasses are copied into plain dicts first (`Counter.__eq__`
  is Python code that calls the patchable `isinstance` and `all`).

The comparison is EvalPlus's (`evalplus/eval/__init__.py`, `unsafe_execute`): equality first; if that
fails and the task's `atol` is non-zero, or the expected value is a float (or a non-empty list/tuple
of floats, after which `atol` stays 1e-6 for the rest of that input set, as EvalPlus's loop leaves
it), the same type and length and numpy's `allclose(out, exp, rtol=1e-7, atol)` elementwise; and its
special oracles: MBPP tasks compared as sets, tasks whose output only has to be (not) None, the
alternative answers of Mbpp/558 and Mbpp/581, and HumanEval/32 (`find_zero`), judged by |poly(x)| <= atol.

Time limits, as EvalPlus's (`gt_time_limit_factor` 4, `min_time_limit` 1 s): each call may run
max(1 s, 4 x the canonical solution's time on that input), enforced in the test program by an
interval timer (SIGALRM) around the call; the sandbox's wall clock (`--timeout`) bounds the whole
program. `time_budget` is EvalPlus's per-input-set cap, min(60 s, sum of the limits) + 1 s.

Residual risks, stated: the checks import `signal` after the sample ran, so a sample that replaced
`__import__` or `signal.setitimer` can lift the per-input limits (never the sandbox's); and, as in
every benchmark here, a sample can read its own program file (the expected values with it) or walk
the interpreter's frames and objects deliberately.
"""

from __future__ import annotations

import json
import keyword
import math
import os
import sys
import queue
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dscoder import cache
from dscoder.errors import UserError

FORMAT = 3  # of the cache files; bump when the ground-truth program or the encoding changes
MIN_TIME_LIMIT = 1.0  # EvalPlus DEFAULT_MIN_TIME_LIMIT
TIME_LIMIT_FACTOR = 4.0  # EvalPlus DEFAULT_GT_TIME_LIMIT_FACTOR
TASK_TIMEOUT_CAP = 60.0  # EvalPlus EVALPLUS_TIMEOUT_PER_TASK
FLOAT_ATOL = 1e-6  # the atol EvalPlus enforces once an expected value is a float
LARGEST_LITERAL = 4096  # characters: an expected value longer than this is compared by its hash
GROUND_TRUTH_SECONDS = 600.0  # wall clock for one task's canonical runs in the sandbox
GROUND_TRUTH_MEMORY = 4 << 30
ORACLE_FILE = "oracle.json"
ORACLE_BYTES = 256 << 20  # the most of the sandboxed program's answer that is read
PROBE = "dscoder-evalplus"  # whose string hash ties a cache's hashes to the interpreter's hash seed

# How each task's output is judged (EvalPlus's special oracles, by entry point as EvalPlus keys them).
PLAIN, SET_EQUAL, NOT_NONE, OR_ZERO, OR_NEAR_ALT, OR_ALT, ANYTHING, ROOT = range(8)
MBPP_MODES = {
    **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                     "intersection_array", "find_dissimilar", "Diff"), SET_EQUAL),
    **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), NOT_NONE),
    "sum_div": OR_ZERO,  # Mbpp/295
    "surface_Area": OR_NEAR_ALT,  # Mbpp/581: the pyramid's surface with the height read as perpendicular
    "digit_distance_nums": OR_ALT,  # Mbpp/558: the numbers zero-padded to one length
    "are_equivalent": ANYTHING,  # Mbpp/164
}
HUMANEVAL_MODES = {"find_zero": ROOT}  # HumanEval/32: any x with |poly(x)| <= atol


def mode_of(dataset: str, entry_point: str) -> int:
    return (MBPP_MODES if dataset == "mbpp" else HUMANEVAL_MODES).get(entry_point, PLAIN)


# ---- code shared by the ground-truth program and the checks (runs in the sandbox) ----------------

# Builtin types reached through literals and `type`'s own class: a sample may rebind the names
# `int`, `type`, `isinstance` in `builtins`, never what a literal is.
TYPES = """\
TYPE = (0).__class__.__class__
INT, BOOL, FLOAT, COMPLEX = (0).__class__, (True).__class__, (0.0).__class__, (0j).__class__
STR, BYTES, NONE = ''.__class__, b''.__class__, (None).__class__
LIST, TUPLE, DICT, SET = [].__class__, ().__class__, {}.__class__, {*()}.__class__
"""

# A 64-bit hash of a value's canonical form, equal for values that are == (1, 1.0, True; dicts in
# any order; sets and frozensets; a Counter and its dict): tags keep list, tuple, str and bytes apart.
# None is a tag, not hashed (its hash is its address before Python 3.12); nan hashes by identity, so
# it matches nothing, as nan != nan; -1, which CPython hashes as -2, carries a flag of its own.
DIGEST = """\
def digest(x):
    t = TYPE(x)
    if t is STR:
        return ('s', x).__hash__()
    if t is INT or t is BOOL or t is FLOAT or t is COMPLEX:
        return ('n', x, x == -1).__hash__()
    if t is NONE:
        return ('z',).__hash__()
    if t is BYTES:
        return ('y', x).__hash__()
    if t is LIST or t is TUPLE:
        tag = 'l' if t is LIST else 't'
        kind = 0
        for e in x:
            k = TYPE(e)
            k = 1 if k is STR else 2 if (k is INT or k is BOOL or k is FLOAT or k is COMPLEX) and e != -1 else 3
            if kind != k:
                kind = k if kind == 0 else 3
            if kind == 3:
                break
        if kind == 1:  # only strings, or only numbers: hashed whole (equal values take the same path)
            return (tag, 's', *x).__hash__()
        if kind == 2:
            return (tag, 'n', *x).__hash__()
        return (tag, *[digest(e) for e in x]).__hash__()
    if DICT in t.__mro__:
        items = [(digest(k), digest(v)) for k, v in {**x}.items()]
        items.sort()
        return ('d', *items).__hash__()
    members = [digest(e) for e in x]
    members.sort()
    return ('e', *members).__hash__()


def floats(x):
    t = TYPE(x)
    if t is FLOAT:
        return True
    if (t is LIST or t is TUPLE) and x:
        for e in x:
            if TYPE(e) is not FLOAT:
                return False
        return True
    return False
"""

# The checks of one sample: `_dscoder_evalplus(entry_point)` with one line per input (`checks_source`).
CHECKER = """\
import signal as _signal
set_timer, REAL = _signal.setitimer, _signal.ITIMER_REAL


class TimeLimit(BaseException):
    pass


def on_alarm(signum, frame):
    raise TimeLimit()


_signal.signal(_signal.SIGALRM, on_alarm)


def run(limit, args, where):
    set_timer(REAL, limit)
    try:
        return fn(*args)
    except TimeLimit:
        raise TimeLimit(f'dscoder: {where} ran past its time limit of {limit:g} s (EvalPlus: the larger of 1 s '
                        f'and 4 times the canonical solution on that input)') from None
    finally:
        set_timer(REAL, 0)


def show(x):
    try:
        s = f'{x!r}'
    except BaseException:
        return '(a value too large to show)'
    return s if s.__len__() <= 300 else s[:300] + '...'


def plain(x):
    t = TYPE(x)
    if t is LIST:
        return [plain(e) for e in x]
    if t is TUPLE:
        return (*[plain(e) for e in x],)
    if t is SET:
        return {plain(e) for e in x}
    if t is DICT or (t is not STR and t is not BYTES and DICT in t.__mro__):
        return {plain(k): plain(v) for k, v in {**x}.items()}
    return x


def number(x):
    t = TYPE(x)
    return t is INT or t is BOOL or t is FLOAT or t is COMPLEX


def close(x, y, atol):
    if number(x) and number(y):
        if x - x == 0 and y - y == 0:
            return (x - y).__abs__() <= atol + 1e-07 * y.__abs__()
        return x == y
    tx, ty = TYPE(x), TYPE(y)
    if (tx is LIST or tx is TUPLE) and (ty is LIST or ty is TUPLE) and x.__len__() == y.__len__():
        i = 0
        for e in x:
            if not close(e, y[i], atol):
                return False
            i = i + 1
        return True
    return False


def check(atol, out, exp, where, mode, alt):
    if mode == NOT_NONE:
        exact = out == exp if TYPE(out) is BOOL else exp == (out is not None)
        assert exact, f'dscoder: {where}: expected {"a match" if exp else "None"}'
        return atol
    out = plain(out)
    exact = out == exp
    if mode == SET_EQUAL:
        exact = {*out} == {*exp}
    elif mode == OR_ZERO:
        exact = exact or out == 0
    elif mode == OR_NEAR_ALT:
        exact = exact or (out - alt).__abs__() <= atol
    elif mode == OR_ALT:
        exact = exact or out == alt
    elif mode == ANYTHING:
        exact = True
    if atol == 0 and floats(exp):
        atol = FLOAT_ATOL
    if not exact and atol != 0:
        assert TYPE(out) is TYPE(exp), wrong(where, exp, out)
        if TYPE(exp) is LIST or TYPE(exp) is TUPLE:
            assert out.__len__() == exp.__len__(), wrong(where, exp, out)
        assert close(out, exp, atol), wrong(where, exp, out) + f' (beyond atol {atol:g}, rtol 1e-07)'
    else:
        assert exact, wrong(where, exp, out)
    return atol


def wrong(where, exp, out):
    return f'dscoder: {where}: expected {show(exp)}, got {show(out)}'


def same(out, expected_digest, where):
    assert digest(out) == expected_digest, f'dscoder: {where}: the output differs from the expected one ' \\
                                           f'(a large output, compared by its hash): got {show(out)}'


def root(out, xs, atol, where):
    t = TYPE(out)
    assert t is FLOAT or t is INT or t is BOOL, f'dscoder: {where}: expected a number, got {show(out)}'
    x = out * 1.0
    total = 0
    i = 0
    for c in xs:
        total = total + c * x ** (i * 1.0)
        i = i + 1
    assert total.__abs__() <= atol, f'dscoder: {where}: poly(xs, {show(out)}) = {show(total)}, not within {atol:g} of 0'
"""

# The program that runs a canonical solution on a task's inputs (in the sandbox) and writes ORACLE_FILE.
GROUND_TRUTH = """\
import json
import math
import sys
import time

if hasattr(sys, 'set_int_max_str_digits'):
    sys.set_int_max_str_digits(0)
{types}
{digest}

def encode(x):
    t = TYPE(x)
    if x is None or t is BOOL or t is STR:
        return x
    if t is INT:
        return x if -2 ** 63 <= x < 2 ** 63 else {{'int': hex(x)}}
    if t is FLOAT:
        return x if x - x == 0 else {{'float': repr(x)}}
    if t is COMPLEX:
        return {{'complex': [encode(x.real), encode(x.imag)]}}
    if t is BYTES:
        return {{'bytes': x.decode('latin-1')}}
    if t is LIST or t is TUPLE or t is SET or t is frozenset:
        return {{t.__name__: [encode(e) for e in x]}}
    if DICT in t.__mro__:
        return {{'dict': [[encode(k), encode(v)] for k, v in x.items()]}}
    raise TypeError(f'the canonical solution returned a {{t.__module__}}.{{t.__qualname__}}, which the checks '
                    f'cannot write as a literal')


def refuse_unless_plain(x):
    stack = [x]
    while stack:
        x = stack.pop()
        t = TYPE(x)
        if t is LIST or t is TUPLE or t is SET or t is frozenset:
            stack.extend(x)
        elif DICT in t.__mro__:
            stack.extend(x.keys())
            stack.extend(x.values())
        elif not (x is None or t is BOOL or t is STR or t is INT or t is FLOAT or t is COMPLEX or t is BYTES):
            encode(x)


def size(x, budget):
    t = TYPE(x)
    if t is STR or t is BYTES:
        return len(x) + 3
    if t is INT:
        return x.bit_length() // 3 + 2
    if t is LIST or t is TUPLE or t is SET or t is frozenset or DICT in t.__mro__:
        n = 2
        for e in (x.items() if DICT in t.__mro__ else x):
            n += size(e, budget - n) + 2
            if n > budget:
                break
        return n
    return 24


def alternative(mode, args):
    if mode == {or_near_alt}:  # Mbpp/581: base edge b, perpendicular height h
        b, h = args
        return round(b * b + 2 * b * math.sqrt((b / 2) ** 2 + h * h))
    if mode == {or_alt}:  # Mbpp/558: digit by digit, both numbers zero-padded to one length
        a, b = str(args[0]), str(args[1])
        width = max(len(a), len(b))
        return sum(abs(int(p) - int(q)) for p, q in zip(a.zfill(width), b.zfill(width)))
    return None


CODE = {code}
ENTRY = {entry}
ATOL = {atol}
MODE = {mode}
SECTIONS = (('base', {base}), ('plus', {plus}))
result = {{'probe': {probe}.__hash__(), 'sections': {{}}}}
for name, inputs in SECTIONS:
    namespace = {{}}  # a fresh module per input set, as EvalPlus runs each set in its own process
    exec(compile(CODE, 'canonical.py', 'exec'), namespace)
    fn = namespace[ENTRY]
    atol = ATOL
    rows = []
    for args in inputs:
        alt = alternative(MODE, args)
        start = time.perf_counter()
        out = fn(*args)
        row = {{'t': time.perf_counter() - start}}
        if MODE == {not_none}:
            out = out is not None
        if MODE != {root}:
            large = MODE == {plain} and atol == 0 and not floats(out) and size(out, {largest}) > {largest}
            if atol == 0 and floats(out):
                atol = {float_atol}
            if large:
                refuse_unless_plain(out)
                row['h'] = digest(out)
            else:
                row['v'] = encode(out)  # refuses what a literal cannot hold
        if alt is not None:
            row['alt'] = encode(alt)
        rows.append(row)
    result['sections'][name] = rows
with open({oracle_file!r}, 'w') as f:
    json.dump(result, f, allow_nan=False)
"""


# ---- values as literals ----------------------------------------------------------------------------

def literal(value) -> str:
    """`value` as Python source made only of literals and operators on them (no name is looked up),
    evaluating to an equal value of the same types: floats keep their bits (inf `1e999`, nan
    `(1e999*0)`), complex numbers their signed zeros, ints past 1000 digits are hex (Python refuses
    longer decimal literals), strings are ASCII escapes."""
    t = type(value)
    if value is None or t is bool:
        return repr(value)
    if t is int:
        return str(value) if abs(value) < 10 ** 1000 else hex(value)
    if t is float:
        if math.isnan(value):
            return "(1e999*0)"
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    if t is complex:
        return f"(0j).__class__({literal(value.real)}, {literal(value.imag)})"
    if t is str:
        return ascii(value)
    if t is bytes:
        return repr(value)
    if t is list:
        return "[" + ", ".join(map(literal, value)) + "]"
    if t is tuple:
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    if t is set:
        return "{" + ", ".join(map(literal, value)) + "}" if value else "{*()}"
    if t is dict:
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for a {t.__module__}.{t.__qualname__} (frozensets and other types have no "
                    f"literal syntax that needs no name)")


def decode(node):
    """A value from the tagged JSON the ground-truth program writes; anything else raises ValueError."""
    t = type(node)
    if node is None or t in (bool, str, int, float):
        return node
    if t is not dict or len(node) != 1:
        raise ValueError(f"not a tagged value: {str(node)[:100]}")
    (tag, payload), = node.items()
    if tag == "int" and type(payload) is str:
        return int(payload, 16)
    if tag == "float" and payload in ("inf", "-inf", "nan"):
        return float(payload)
    if tag == "complex" and type(payload) is list and len(payload) == 2:
        real, imag = map(decode, payload)
        if type(real) is not float or type(imag) is not float:
            raise ValueError("complex parts must be floats")
        return complex(real, imag)
    if tag == "bytes" and type(payload) is str:
        return payload.encode("latin-1")
    if tag in ("list", "tuple", "set", "frozenset") and type(payload) is list:
        items = [decode(e) for e in payload]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(payload) is list and all(type(p) is list and len(p) == 2 for p in payload):
        return {decode(k): decode(v) for k, v in payload}
    raise ValueError(f"unknown tagged value {tag!r}")


# ---- the ground truth: computed in the sandbox, cached ----------------------------------------------

NOTHING = object()  # an entry without an expected value (HumanEval/32 is judged without one)


@dataclass
class Entry:
    """One input's ground truth: the canonical solution's time, and its output as a value (`value`)
    or, when large, as a hash (`digest`); `alt` is a special oracle's other accepted answer."""

    seconds: float
    value: object = NOTHING
    digest: int | None = None
    alt: object = None

    @property
    def limit(self) -> float:
        return max(MIN_TIME_LIMIT, TIME_LIMIT_FACTOR * self.seconds)


@dataclass
class Oracle:
    task_id: str
    sections: dict[str, list[Entry]]  # "base", "plus"
    probe: int  # the interpreter's hash of PROBE when the digests were taken
    hashed: bool = field(init=False)

    def __post_init__(self):
        self.hashed = any(e.digest is not None for entries in self.sections.values() for e in entries)

    def time_budget(self, section: str) -> float:
        """EvalPlus's cap for one input set: min(60 s, sum of the per-input limits) + 1 s."""
        return min(TASK_TIMEOUT_CAP, sum(e.limit for e in self.sections[section])) + 1.0


def cache_dir() -> Path:
    """$DSCODER_CACHE/evalplus, else $XDG_CACHE_HOME/dscoder/evalplus, else ~/.cache/dscoder/evalplus."""
    return cache.cache_dir("evalplus")


sha256_of = cache.sha256_file


def _interpreter() -> str:
    return f"{sys.version} {sys.hash_info.algorithm}"


def _parse(raw: dict, task_id: str, sections: dict[str, int]) -> Oracle:
    """An Oracle from the ground-truth program's answer (or a cache file), checked entry by entry."""
    if type(raw) is not dict or type(raw.get("probe")) is not int or type(raw.get("sections")) is not dict:
        raise ValueError("not a ground-truth record")
    parsed = {}
    for name, count in sections.items():
        rows = raw["sections"].get(name)
        if type(rows) is not list or len(rows) != count:
            raise ValueError(f"{name}: {count} entries expected")
        entries = []
        for row in rows:
            if type(row) is not dict or not set(row) <= {"t", "v", "h", "alt"} or type(row.get("t")) not in (int, float):
                raise ValueError(f"{name}: a malformed entry")
            if "h" in row and (type(row["h"]) is not int or "v" in row):
                raise ValueError(f"{name}: a malformed hash")
            entries.append(Entry(float(row["t"]), decode(row["v"]) if "v" in row else NOTHING, row.get("h"),
                                 decode(row["alt"]) if "alt" in row else None))
        parsed[name] = entries
    return Oracle(task_id, parsed, raw["probe"])


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a value the ground-truth program writes")


def _loads(text: str | bytes):
    return json.loads(text, parse_constant=_no_constants)


@dataclass(frozen=True)
class Task:
    """What the ground truth of one task needs: its code, entry point and inputs (as values)."""

    task_id: str
    code: str  # prompt + canonical solution, as EvalPlus runs it
    entry_point: str
    atol: float
    mode: int
    base: list
    plus: list


def ground_truth_program(task: Task) -> str:
    return GROUND_TRUTH.format(
        types=TYPES, digest=DIGEST, code=ascii(task.code), entry=ascii(task.entry_point), atol=literal(task.atol),
        mode=task.mode, base=literal(task.base), plus=literal(task.plus), probe=ascii(PROBE), plain=PLAIN,
        not_none=NOT_NONE, root=ROOT, or_near_alt=OR_NEAR_ALT, or_alt=OR_ALT, largest=LARGEST_LITERAL,
        float_atol=FLOAT_ATOL, oracle_file=ORACLE_FILE)


def _read_answer(workdir: Path) -> bytes:
    """The program's answer file, never through a link it may have put there, at most ORACLE_BYTES."""
    fd = os.open(workdir / ORACLE_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with os.fdopen(fd, "rb") as f:
            fd = None
            data = f.read(ORACLE_BYTES + 1)
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > ORACLE_BYTES:
        raise ValueError(f"{ORACLE_FILE} is over {ORACLE_BYTES >> 20} MiB")
    return data


def _compute(task: Task, uid: int) -> dict:
    """Run `task`'s canonical solution in the sandbox; its checked answer (raw, as cached)."""
    from dscoder.execute import sandbox
    from dscoder.execute.toolchains import toolchain

    tool = toolchain("python")
    # EvalPlus runs the ground truth unconfined; 4 GiB is its cap for samples (Mbpp/255 needs 1.2 GB).
    limits = sandbox.Limits(wall_seconds=GROUND_TRUTH_SECONDS, cpu_seconds=int(GROUND_TRUTH_SECONDS) + 60,
                            memory_bytes=GROUND_TRUTH_MEMORY, address_space_bytes=2 * GROUND_TRUTH_MEMORY)
    with sandbox.Workdir({tool.filename: ground_truth_program(task)}) as workdir:
        ran = sandbox.run(list(tool.run), workdir, limits, env=tool.env, mounts=tool.mounts(), uid=uid)
        if not ran.ok:
            why = ran.limit or ("timed out" if ran.timed_out else f"exit status {ran.returncode}")
            raise UserError(f"EvalPlus {task.task_id}: the canonical solution failed in the sandbox ({why}): "
                            f"{ran.stderr.strip()[-1500:]}")
        try:
            raw = _loads(_read_answer(workdir))
        except (OSError, ValueError) as e:
            raise UserError(f"EvalPlus {task.task_id}: no readable ground truth from the sandbox: {e}") from None
    return raw


def _cache_file(sha256: str, task_id: str) -> Path:
    return cache_dir() / sha256 / (task_id.replace("/", "_") + ".json")


def _cached(path: Path, task: Task, sha256: str) -> Oracle | None:
    try:
        record = _loads(path.read_bytes())
        if type(record) is not dict or (record.get("format"), record.get("sha256"), record.get("task_id"),
                                        record.get("interpreter")) != (FORMAT, sha256, task.task_id, _interpreter()):
            return None
        return _parse(record.get("oracle"), task.task_id, {"base": len(task.base), "plus": len(task.plus)})
    except (OSError, ValueError, RecursionError):
        return None  # absent, from another interpreter, or damaged: computed again


def oracles(tasks: list[Task], sha256: str, workers: int | None = None) -> dict[str, Oracle]:
    """The ground truth of each task: from the cache when it holds this data file's (by `sha256`), else
    computed in the sandbox (`workers` at a time, each as its own sandbox uid) and cached."""
    from dscoder.execute import sandbox
    from dscoder.execute.programs import default_workers
    from dscoder.files import write_atomic

    found = {t.task_id: _cached(_cache_file(sha256, t.task_id), t, sha256) for t in tasks}
    missing = [t for t in tasks if found[t.task_id] is None]
    if not missing:
        return found
    workers = max(1, min(workers or default_workers(), len(missing)))
    print(f"EvalPlus: computing the expected outputs of {len(missing)} task(s) in the sandbox, once "
          f"(cached in {cache_dir() / sha256})", file=sys.stderr)
    sandbox.isolation()
    uids: queue.Queue[sandbox.UidLease] = queue.Queue()

    def one(task: Task) -> None:
        lease = uids.get()
        try:
            raw = _compute(task, lease.uid)
        finally:
            uids.put(lease)
        try:
            found[task.task_id] = _parse(raw, task.task_id, {"base": len(task.base), "plus": len(task.plus)})
        except (ValueError, RecursionError) as e:
            raise UserError(f"EvalPlus {task.task_id}: the sandbox's ground truth is malformed: {e}") from None
        path = _cache_file(sha256, task.task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"format": FORMAT, "sha256": sha256, "task_id": task.task_id,
                                       "interpreter": _interpreter(), "oracle": raw}, allow_nan=False))

    leases = [sandbox.UidLease() for _ in range(workers)]
    try:
        for lease in leases:
            uids.put(lease)
        with ThreadPoolExecutor(workers, thread_name_prefix="evalplus-truth") as pool:
            for future in [pool.submit(one, task) for task in missing]:
                future.result()
    finally:
        for lease in leases:
            lease.close()
    return found


# ---- the checks of one sample -------------------------------------------------------------------

def checks_source(dataset: str, entry_point: str, atol: float, inputs: dict[str, list], oracle: Oracle,
                  sections: tuple[str, ...]) -> str:
    """The checks (after the harness's separator) that run `entry_point` on each input of `sections`
    in order and judge each output as EvalPlus does, inside one function whose helpers are its locals."""
    if not entry_point.isidentifier() or keyword.iskeyword(entry_point):
        raise ValueError(f"entry point {entry_point!r} is not an identifier")
    mode = mode_of(dataset, entry_point)
    constants = {"FLOAT_ATOL": FLOAT_ATOL, "NOT_NONE": NOT_NONE, "SET_EQUAL": SET_EQUAL, "OR_ZERO": OR_ZERO,
                 "OR_NEAR_ALT": OR_NEAR_ALT, "OR_ALT": OR_ALT, "ANYTHING": ANYTHING}
    body = [TYPES, "".join(f"{k} = {literal(v)}\n" for k, v in constants.items()), DIGEST, CHECKER]
    if oracle.hashed:
        why = (f"dscoder: this sandbox hashes strings otherwise than the one that hashed the cached EvalPlus "
               f"outputs; delete {cache_dir()}")
        body.append(f"assert {ascii(PROBE)}.__hash__() == {oracle.probe}, {ascii(why)}\n")
    for section in sections:
        body.append(f"atol = {literal(atol)}\n")
        for i, (args, entry) in enumerate(zip(inputs[section], oracle.sections[section])):
            where = ascii(f"{section} input #{i}")
            call = f"run({entry.limit!r}, {literal(args)}, {where})"
            if mode == ROOT:
                body.append(f"root({call}, {literal(args[0])}, {literal(atol)}, {where})\n")
            elif entry.digest is not None:
                body.append(f"same({call}, {entry.digest}, {where})\n")
            else:
                body.append(f"atol = check(atol, {call}, {literal(entry.value)}, {where}, {mode}, "
                            f"{literal(entry.alt)})\n")
    return (f"def _dscoder_evalplus(fn):\n{textwrap.indent(''.join(body), '    ')}\n\n"
            f"_dscoder_evalplus({entry_point})\n")


__all__ = ["Task", "Oracle", "Entry", "oracles", "checks_source", "literal", "decode", "cache_dir", "sha256_of",
           "mode_of", "ground_truth_program"]
