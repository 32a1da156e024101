"""fim-lines: single-line infilling in Java and JavaScript, scored by exact match of the first line.

OUR CONSTRUCTION, not a published set. DeepSeek-Coder (V1 and V2) reports single-line infilling
in Python, Java and JavaScript as the exact match of the first generated line, on SantaCoder's
FIM set (`bigcode/santacoder-fim-task`), which is not available here. These cases stand in for
its Java and JavaScript parts; they are not SantaCoder's problems, so their numbers are not the
papers' numbers (the Python part is HumanEval single-line infilling's exact match,
`dscoder eval humaneval-infilling`).

How the cases were built (`python -m dscoder.tasks.fim_lines build --language java --out FILE`):
real source files on the machine that built them, chosen with a seeded generator —

- java: 200 of the 9,546 files of the JDK's `lib/src.zip` under the standard `java.*` modules,
  one line per file (Eclipse Temurin 25.0.3 on the build machine, /usr/lib/jvm/temurin-25-jdk-amd64;
  no Debian package owns that archive, and Debian's `openjdk-17-jdk-headless` ships no sources:
  its `src.zip` link dangles unless `openjdk-17-source` is installed). At load time every
  /usr/lib/jvm/*/lib/src.zip is searched, so a file unchanged in another JDK still matches its hash;
- js: the JavaScript of Debian's `node-typescript` 4.8.4+ds1-2 (`/usr/share/nodejs/typescript/lib`,
  which scripts/install-toolchains.sh installs): the compiler's one-file `typescript.js` (172,000
  lines, its functions spread over the whole compiler) gives most cases, the small helper scripts
  one each; the other bundles (tsc.js, tsserver.js...) repeat typescript.js and are left out. The
  npm bundled with Node.js was not used: it is upgraded in place by `npm install -g npm`, so its
  files are not the package's.

In each file a line is a candidate when it lies inside a function or method body (a small
brace/string/comment scanner tracks which block each line is in), is complete code (it starts and
ends outside comments and strings, holds no comment), and is not trivial (8-120 characters, not a
lone brace or `} else {`, `return;`, `break;`...). The hole is that line (with its indentation and
newline, as HumanEval's single-line middles are); the prefix is up to 100 lines / 4000 characters
before it and the suffix up to 50 lines / 2000 characters after it, cut at line boundaries. No two
cases share a line's text. Seed 0 (`--seed`) built the shipped files.

Third-party code is never copied into this repository: a case in `data/fim-lines-*.jsonl` holds
only where its file is (a known source root and a relative path, or a member of the JDK's
src.zip), the file's sha256, the line number and the cut sizes. At load time the file is read,
its hash checked, and prefix/middle/suffix rebuilt; a case whose file is absent or differs is
left out by name (the report says how many), and a subset with no case left is skipped, never
scored 0%. Cases rebuilt elsewhere are used with `--data DIR` holding `DIR/fim-lines/<java|js>.jsonl`.
A case file naming anything outside the known roots (an absolute path, `..`, a symlink leading
out, an unknown source) is refused as a whole.

The judge compares text only (no toolchain needed, so the benchmark runs under the always-present
"python" language): the first non-blank line of the generated middle, stripped, against the
reference line, stripped, as bigcode-evaluation-harness's `santacoder_fim` task compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path, PurePosixPath

from dscoder.errors import UserError
from dscoder.files import write_atomic
from dscoder.tasks.infilling import exact_match
from dscoder.tasks.problem import Problem, Problems

FORMAT = 1
SUBSETS = ("java", "js")
PREFIX_LINES, PREFIX_CHARS = 100, 4000
SUFFIX_LINES, SUFFIX_CHARS = 50, 2000
MAX_NEW_TOKENS = 64  # only the first line is judged
MAX_FILE_BYTES = 16 << 20


# ---- where case files may come from -----------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A root that case files are read from: a directory (`dir`), or every JDK `src.zip` found by a fixed
    pattern (`jdk-zip`: a case's path is a member name in the archive). Nothing in a case file chooses
    the location: a case names a source by key and a path relative to it."""

    kind: str  # "dir" or "jdk-zip"
    location: str  # the directory, or the glob of the archives


SOURCES = {
    "jdk-src": Source("jdk-zip", "/usr/lib/jvm/*/lib/src.zip"),
    "nodejs": Source("dir", "/usr/share/nodejs"),
}


class CaseFileError(UserError):
    """A fim-lines case file is malformed or names a file outside its known roots."""


def _relative(path: object, where: str) -> PurePosixPath:
    """`path` as a plain relative path (no root, no `..`, no empty or odd parts), or CaseFileError."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        raise CaseFileError(f"{where}: path {path!r} is not a relative file path")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise CaseFileError(f"{where}: path {path!r} must stay inside its source (no absolute path, no '..')")
    return pure


def _archives(source: Source) -> list[Path]:
    """The JDK source archives present, by the fixed pattern, in a stable order; dangling links skipped."""
    base = Path(source.location)
    anchor = Path(base.anchor)
    return [p for p in sorted(anchor.glob(str(base.relative_to(anchor)))) if p.is_file()]


class _Reader:
    """Reads case files from the sources, each at most once per load (the typescript bundle is 11 MB, the
    JDK's src.zip lists 15,000 members), and keeps their lines once a version matched a case's hash."""

    def __init__(self, sources: dict[str, Source]):
        self.sources = sources
        self.cache: dict[tuple[str, str], list[tuple[str, bytes]]] = {}  # (sha256, bytes) of each version
        self.zips: dict[Path, zipfile.ZipFile | None] = {}
        self.lines: dict[str, list[str] | None] = {}  # by sha256

    def close(self) -> None:
        for archive in self.zips.values():
            if archive is not None:
                archive.close()

    def candidates(self, key: str, path: PurePosixPath, where: str) -> list[tuple[str, bytes]]:
        """(sha256, bytes) of every version of the file found (one per JDK archive holding it); [] when absent."""
        if key not in self.sources:
            raise CaseFileError(f"{where}: unknown source {key!r}; known: {', '.join(self.sources)}")
        if (key, str(path)) not in self.cache:
            self.cache[(key, str(path))] = [(hashlib.sha256(data).hexdigest(), data)
                                            for data in self._read(self.sources[key], path, where)]
        return self.cache[(key, str(path))]

    def lines_of(self, data: bytes, sha256: str) -> list[str] | None:
        if sha256 not in self.lines:
            try:
                self.lines[sha256] = split_lines(data.decode("utf-8"))
            except UnicodeDecodeError:
                self.lines[sha256] = None
        return self.lines[sha256]

    def _zip(self, archive: Path) -> zipfile.ZipFile | None:
        if archive not in self.zips:
            try:
                self.zips[archive] = zipfile.ZipFile(archive)
            except (zipfile.BadZipFile, OSError):
                self.zips[archive] = None
        return self.zips[archive]

    def _read(self, source: Source, path: PurePosixPath, where: str) -> list[bytes]:
        if source.kind == "jdk-zip":
            found = []
            for archive in _archives(source):
                z = self._zip(archive)
                try:
                    info = z.getinfo(str(path)) if z is not None else None
                except KeyError:
                    info = None
                if info is None:
                    continue
                if info.file_size > MAX_FILE_BYTES:
                    raise CaseFileError(f"{where}: {path} in {archive} is over {MAX_FILE_BYTES} bytes")
                try:
                    found.append(z.read(info))
                except (zipfile.BadZipFile, OSError):
                    continue
            return found
        root = Path(source.location).resolve()
        target = Path(source.location) / path
        real = target.resolve()  # every symlink on the way followed, before anything is looked at
        if root != real and root not in real.parents:  # a symlink (or a swapped directory) leading out
            raise CaseFileError(f"{where}: {target} leads outside {source.location} (to {real}); refused")
        if not real.exists():
            return []
        if not real.is_file():
            raise CaseFileError(f"{where}: {target} is not a regular file")
        if real.stat().st_size > MAX_FILE_BYTES:
            raise CaseFileError(f"{where}: {target} is over {MAX_FILE_BYTES} bytes")
        return [real.read_bytes()]


# ---- cases: reading them back -----------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    task_id: str
    source: str
    path: str
    sha256: str
    line: int  # 1-based line number of the hole
    prefix_lines: int
    suffix_lines: int


_FIELDS = {"task_id": str, "source": str, "path": str, "sha256": str, "line": int, "prefix_lines": int,
           "suffix_lines": int}


def read_cases(path: Path) -> list[Case]:
    """The cases of a JSONL case file, every field checked (CaseFileError names the line at fault)."""
    cases, seen = [], set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise CaseFileError(f"{where}: not JSON ({e})") from None
        if not isinstance(row, dict) or row.get("format") != FORMAT:
            raise CaseFileError(f"{where}: not a fim-lines case of format {FORMAT}")
        for name, kind in _FIELDS.items():
            if not isinstance(row.get(name), kind) or isinstance(row.get(name), bool):
                raise CaseFileError(f"{where}: field {name!r} must be a {kind.__name__}")
        if not re.fullmatch(r"[0-9a-f]{64}", row["sha256"]):
            raise CaseFileError(f"{where}: sha256 must be 64 hex digits")
        if row["line"] < 1 or row["prefix_lines"] < 0 or row["suffix_lines"] < 0:
            raise CaseFileError(f"{where}: line must be >= 1 and the cut sizes >= 0")
        _relative(row["path"], where)
        if row["task_id"] in seen:
            raise CaseFileError(f"{where}: task_id {row['task_id']!r} appears twice")
        seen.add(row["task_id"])
        cases.append(Case(**{name: row[name] for name in _FIELDS}))
    return cases


def split_lines(text: str) -> list[str]:
    """Lines split on "\\n" only, each keeping its newline (str.splitlines also splits on U+2028 and
    form feeds, which JavaScript strings and Java sources contain)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def cut(lines: list[str], case: Case) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of `case` in the file's lines, or None when the line is not there."""
    at = case.line - 1
    if at >= len(lines) or case.prefix_lines > at:
        return None
    return ("".join(lines[at - case.prefix_lines:at]), lines[at],
            "".join(lines[at + 1:at + 1 + case.suffix_lines]))


def load_cases(path: Path, subset: str, sources: dict[str, Source] | None = None) -> Problems:
    """The problems of a case file whose files are here and unchanged; the others in `left_out`, by name."""
    reader = _Reader(SOURCES if sources is None else sources)
    problems = Problems()
    try:
        for case in read_cases(path):
            where = f"{path} ({case.task_id})"
            versions = reader.candidates(case.source, _relative(case.path, where), where)
            data = next((data for sha, data in versions if sha == case.sha256), None)
            if data is None:
                problems.left_out[case.task_id] = (f"{case.path} differs (sha256)" if versions
                                                   else f"{case.path} absent")
                continue
            lines = reader.lines_of(data, case.sha256)
            pieces = cut(lines, case) if lines is not None else None
            if pieces is None:
                raise CaseFileError(f"{where}: line {case.line} with {case.prefix_lines} lines before is not in "
                                    f"{case.path} (the file matches its hash, so the case itself is wrong)")
            problems.append(problem(case.task_id, subset, *pieces))
    finally:
        reader.close()
    return problems


def problem(task_id: str, subset: str, prefix: str, middle: str, suffix: str) -> Problem:
    return Problem(task_id, subset, prefix, None, reference=middle, fim=(prefix, suffix),
                   max_new_tokens=MAX_NEW_TOKENS, group=subset, judge=partial(_judge, middle),
                   measures={"exact_match": partial(exact_match, reference=middle)})


def _judge(reference: str, completion: str) -> bool:
    return exact_match(completion, reference) == 1.0


def case_file(subset: str, data: Path | None = None) -> Path:
    """The case file of `subset`: `DATA/fim-lines/<subset>.jsonl` when --data holds one (cases rebuilt for
    another machine), else the one shipped with the package."""
    if data is not None and (Path(data) / "fim-lines" / f"{subset}.jsonl").is_file():
        return Path(data) / "fim-lines" / f"{subset}.jsonl"
    return Path(str(resources.files("dscoder.tasks") / "data" / f"fim-lines-{subset}.jsonl"))


def problems(subset: str = "java", data: Path | None = None) -> Problems:
    if subset not in SUBSETS:
        raise UserError(f"unknown fim-lines subset {subset!r}; choose from {', '.join(SUBSETS)}")
    return load_cases(case_file(subset, data), subset)


# ---- finding the lines: a scanner for C-like sources ------------------------------------------

_CONTROL = {"if", "for", "while", "switch", "catch", "with", "synchronized", "do", "else", "try", "finally"}
_REGEX_AFTER = {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "yield",
                "await", "instanceof"}
_TYPE_WORDS = {"class", "interface", "enum"}
_ANONYMOUS = re.compile(r"\bnew\s+[\w$.<>,?\s\[\]]+\(.*\)$")
_TRIVIAL = re.compile(r"[\s{}()\[\];,]*(?:(?:else|try|finally|do|default|break|continue|return)\b[\s:;]*)?"
                      r"[\s{}()\[\];,]*")
_TOKEN = re.compile(r'''(?P<nl>\n)|(?P<ws>[ \t\r\f\v]+)|(?P<line_comment>//[^\n]*)|(?P<block_comment>/\*.*?\*/)'''
                    r'''|(?P<text_block>"""(?:[^\\]|\\.)*?""")|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')'''
                    r'''|(?P<backtick>`)|(?P<open>\{)|(?P<close>\})|(?P<semi>;)|(?P<slash>/)'''
                    r'''|(?P<word>[A-Za-z_$][\w$]*|\d[\w.]*)|(?P<arrow>=>|->)|(?P<other>.)''', re.S)
_TEMPLATE = re.compile(r"(?:[^`\\$]|\\.|\$(?!\{))*", re.S)
_REGEX = re.compile(r"/(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\])+/[a-z]*")


class ScanError(ValueError):
    """The scanner lost track of the file (unbalanced braces, an unclosed string): it gives no lines."""


@dataclass
class _Line:
    clean: bool = True  # starts and ends in plain code, holds no comment
    in_body: bool = False  # the innermost block at its start is a function/method body


def _declares_type(tokens: list[str]) -> bool:
    """`class X`, `interface X`, `enum X` or Java's `record X(...)`, not `Foo.class` nor a variable `record`."""
    if not tokens or tokens[0] in _CONTROL or "=>" in tokens or "->" in tokens:
        return False
    for i, token in enumerate(tokens):
        if i and tokens[i - 1] == ".":
            continue
        if token in _TYPE_WORDS:
            return True
        if token == "record" and i + 2 < len(tokens) and tokens[i + 1][:1].isalpha() and tokens[i + 2] in "(<":
            return True
    return False


def _kind(tokens: list[str], parent: str | None, language: str) -> str:
    """What a `{` opens, from the code since the last `;`, `{` or `}`: type body, code body, or other."""
    header = " ".join(tokens)
    first = tokens[0] if tokens else ""
    if _declares_type(tokens):
        return "type"
    if language == "java" and _ANONYMOUS.search(header) and first not in _CONTROL:
        return "type"
    if language == "js" and (re.search(r"\bfunction\b", header) or header.endswith("=>")):
        return "code"
    if parent == "code":
        return "code"
    ends_call = header.endswith(")") or re.search(r"\)\s*throws\s+[\w$.,\s<>]+$", header) is not None
    if parent == "type":
        return "code" if ends_call or header in ("", "static") else "other"
    if language == "js" and ends_call and first not in _CONTROL:
        return "code"  # an object literal's method shorthand
    return "other"


def scan(text: str, language: str) -> list[_Line]:
    """Per line (split on "\\n"): whether it is clean code and inside a function or method body."""
    lines = [_Line() for _ in range(text.count("\n") + 1)]
    stack: list[str] = []  # kinds of the open blocks; "tmpl" for a template literal's ${
    header: list[str] = []
    row, at, previous = 0, 0, ""

    def mark_span(start_row: int, end_row: int) -> None:
        for r in range(start_row, end_row + 1):
            lines[r].clean = False

    def template(at: int, row: int) -> tuple[int, int, bool]:
        """Scan a template literal's text from `at`; returns (position, row, entered ${)."""
        end = _TEMPLATE.match(text, at).end()
        if "\n" in text[at:end]:  # a template over several lines: none of them is a line on its own
            mark_span(row, row + text.count("\n", at, end))
            row += text.count("\n", at, end)
        if end >= len(text):
            raise ScanError("unclosed template literal")
        if text[end] == "`":
            return end + 1, row, False
        return end + 2, row, True  # "${"

    lines[0].in_body = False
    while at < len(text):
        m = _TOKEN.match(text, at)
        kind, value = m.lastgroup, m.group()
        at = m.end()
        if kind == "nl":
            row += 1
            lines[row].in_body = bool(stack) and stack[-1] == "code"
            continue
        if kind == "ws":
            continue
        if kind in ("line_comment", "block_comment"):
            mark_span(row, row + value.count("\n"))
            row += value.count("\n")
            continue
        if kind == "text_block" and language == "java" or kind == "string":
            if "\n" in value:
                mark_span(row, row + value.count("\n"))
                row += value.count("\n")
            header.append('""')
            previous = '""'
            continue
        if kind == "text_block":  # JavaScript: """ is an empty string and the start of another
            at = m.start() + 2
            header.append('""')
            previous = '""'
            continue
        if kind == "backtick" and language == "js":
            at, row, entered = template(at, row)
            if entered:
                stack.append("tmpl")
                header = []
            header.append('""')
            previous = '""'
            continue
        if kind == "slash" and language == "js" and (previous == "" or previous in _REGEX_AFTER or (
                not previous[-1].isalnum() and previous[-1] not in ")]$_\"")):
            regex = _REGEX.match(text, m.start())
            if regex:
                at = regex.end()
                header.append('""')
                previous = '""'
                continue
        if kind == "open":
            stack.append(_kind(header, stack[-1] if stack else None, language))
            header = []
        elif kind == "close":
            if not stack:
                raise ScanError(f"unbalanced '}}' on line {row + 1}")
            if stack.pop() == "tmpl":
                at, row, entered = template(at, row)
                if entered:
                    stack.append("tmpl")
            header = []
        elif kind == "semi":
            header = []
        else:
            header.append(value)
        previous = value
    if stack:
        raise ScanError(f"{len(stack)} blocks left open at the end")
    return lines


def candidates(text: str, language: str) -> list[int]:
    """1-based numbers of the lines that make a good hole (see the module's docstring)."""
    try:
        info = scan(text, language)
    except (ScanError, IndexError):
        return []
    lines = split_lines(text)
    if sum(len(line) > 400 for line in lines) * 100 > len(lines):  # minified: not code written line by line
        return []
    chosen = []
    for number, (line, about) in enumerate(zip(lines, info), 1):
        body = line.strip()
        if (about.clean and about.in_body and 8 <= len(body) <= 120 and 10 <= number <= len(lines) - 3
                and not _TRIVIAL.fullmatch(body) and re.search(r"[A-Za-z0-9]", body)):
            chosen.append(number)
    return chosen


# ---- building case files ----------------------------------------------------------------------

@dataclass(frozen=True)
class SourceFile:
    source: str  # a key of SOURCES
    path: str  # relative to it
    picks: int = 1  # lines taken from this file at most


def java_files(sources: dict[str, Source] = SOURCES) -> tuple[list[SourceFile], dict[str, bytes]]:
    """The standard `java.*` modules' sources in the first JDK src.zip found (and their bytes)."""
    archives = _archives(sources["jdk-src"])
    if not archives:
        raise UserError(f"no JDK source archive matches {sources['jdk-src'].location}")
    files, data = [], {}
    with zipfile.ZipFile(archives[0]) as z:
        for name in sorted(z.namelist()):
            base = name.rsplit("/", 1)[-1]
            if name.startswith("java.") and base.endswith(".java") and base not in ("module-info.java",
                                                                                    "package-info.java"):
                files.append(SourceFile("jdk-src", name))
                data[name] = z.read(name)
    return files, data


# The compiler in one file gives the cases; its other bundles (tsc.js, tsserver.js, ...) repeat its code.
JS_MANY = {"typescript/lib/typescript.js": 200}
JS_BUNDLES_LEFT_OUT = 1 << 20  # bytes: a bigger lib/*.js is one of those repeating bundles


def js_files(sources: dict[str, Source] = SOURCES) -> tuple[list[SourceFile], dict[str, bytes]]:
    """Debian node-typescript's lib/*.js: the compiler (typescript.js) and the small helper scripts."""
    files, data = [], {}
    typescript = Path(sources["nodejs"].location) / "typescript" / "lib"
    for path in sorted(typescript.glob("*.js")):
        relative = str(path.relative_to(sources["nodejs"].location))
        if path.is_file() and not path.is_symlink() and (path.stat().st_size < JS_BUNDLES_LEFT_OUT
                                                         or relative in JS_MANY):
            files.append(SourceFile("nodejs", relative, JS_MANY.get(relative, 1)))
            data[relative] = path.read_bytes()
    if not any(f.path in JS_MANY for f in files):
        raise UserError(f"{typescript / 'typescript.js'} not found: install Debian's node-typescript")
    return files, data


def _owner(path: str) -> str:
    """The Debian package that owns `path` and its version (dpkg), or why none is known."""
    try:
        owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=60)
        if owner.returncode != 0:
            release = Path(path).parent.parent / "release"  # a JDK's lib/src.zip: the JDK says its version
            version = re.search(r'^IMPLEMENTOR_VERSION="([^"]+)"', release.read_text(), re.M) \
                if path.endswith("/lib/src.zip") and release.is_file() else None
            return f"{version.group(1) + ', ' if version else ''}no Debian package (dpkg -S finds no owner)"
        package = owner.stdout.split(":", 1)[0].strip()
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
        return f"{package} {version}".strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no dpkg)"


def build(language: str, count: int = 200, seed: int = 0, sources: dict[str, Source] = SOURCES) -> list[dict]:
    """`count` cases from this machine's files, chosen by `seed`: files in a shuffled order, in each file
    `picks` of its candidate lines (one in most), no two cases with the same line text."""
    if language not in SUBSETS:
        raise UserError(f"fim-lines builds {', '.join(SUBSETS)}, not {language!r}")
    files, data = java_files(sources) if language == "java" else js_files(sources)
    rng = random.Random(f"fim-lines/{language}/{seed}")
    rng.shuffle(files)
    owners: dict[str, str] = {}
    rows, texts = [], set()
    for file in files:
        if len(rows) >= count:
            break
        try:
            text = data[file.path].decode("utf-8")
        except UnicodeDecodeError:
            continue
        lines = split_lines(text)
        options = candidates(text, language)
        rng.shuffle(options)
        taken = 0
        for number in options:
            if taken >= file.picks or len(rows) >= count:
                break
            if lines[number - 1].strip() in texts:
                continue
            texts.add(lines[number - 1].strip())
            taken += 1
            rows.append(_case(language, file, data[file.path], lines, number, owners, sources))
    if len(rows) < count:
        raise UserError(f"only {len(rows)} {language} cases found on this machine, {count} asked")
    return rows


def _case(language: str, file: SourceFile, raw: bytes, lines: list[str], number: int, owners: dict[str, str],
          sources: dict[str, Source]) -> dict:
    before, chars = 0, 0
    while before < min(PREFIX_LINES, number - 1) and chars + len(lines[number - 2 - before]) <= PREFIX_CHARS:
        chars += len(lines[number - 2 - before])
        before += 1
    after, chars = 0, 0
    while after < min(SUFFIX_LINES, len(lines) - number) and chars + len(lines[number + after]) <= SUFFIX_CHARS:
        chars += len(lines[number + after])
        after += 1
    source = sources[file.source]
    where = str(_archives(source)[0]) if source.kind == "jdk-zip" else str(Path(source.location) / file.path)
    if where not in owners:
        owners[where] = _owner(where)
    return {"format": FORMAT, "task_id": f"{language}/{file.path}:{number}", "source": file.source,
            "path": file.path, "sha256": hashlib.sha256(raw).hexdigest(), "line": number,
            "prefix_lines": before, "suffix_lines": after,
            "built_from": where + (f"!{file.path}" if source.kind == "jdk-zip" else ""), "package": owners[where]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dscoder.tasks.fim_lines",
                                     description="Build a fim-lines case file from this machine's source files.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="choose the cases and write them as JSONL (no source text is stored)")
    make.add_argument("--language", choices=SUBSETS, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--count", type=int, default=200)
    make.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rows = build(args.language, args.count, args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} {args.language} cases written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
