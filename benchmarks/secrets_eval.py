"""Secret redaction scored on a hand-labelled set, and its speed on real code.

The set, tests/data/secrets_labelled.jsonl, holds one case per row: `text` (a few lines of a
file), `path` (its name: detect-secrets picks its keyword regexes by file type), `label` (true:
it holds a secret), `kind`, and for positives `secret`, the value that must disappear. Negatives
are look-alikes that must lose nothing to a `<KEY>` (digests, UUIDs, password variables holding
no literal, placeholders, AWS's documented example key...).

Key-shaped values are not stored literally: `{{A:36}}`-style fields are filled at load time
from a RNG seeded by the row, and `{{SECRET}}` in `text` stands for the row's filled `secret`.
So no string in the repository matches a secret scanner's pattern (as in
tests/data/test_data_pii_decontam.py), while every run scores the same values.

    python benchmarks/secrets_eval.py              # per-kind table, stdlib MB/s; appends to RESULTS.md
    python benchmarks/secrets_eval.py --no-save    # print only
    git show HEAD:dscoder/data/pii.py > /tmp/pii_before.py
    python benchmarks/secrets_eval.py --baseline /tmp/pii_before.py   # and time that version too
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import inspect
import json
import platform
import random
import re
import statistics
import string
import sys
import sysconfig
import time
import uuid
import zlib
from collections import defaultdict
from datetime import date
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
LABELLED = ROOT / "tests" / "data" / "secrets_labelled.jsonl"

_CHARSETS = {"A": string.ascii_letters + string.digits, "U": string.ascii_uppercase + string.digits,
             "L": string.ascii_lowercase + string.digits, "H": "0123456789abcdef", "D": string.digits,
             "G": string.ascii_letters + string.digits + "_-", "B": string.ascii_letters + string.digits + "+/"}
_FIELD = re.compile(r"\{\{([A-Z0-9]+)(?::(\d+))?\}\}")


def _field(rng: random.Random, name: str, n: int) -> str:
    if name in _CHARSETS:
        return "".join(rng.choice(_CHARSETS[name]) for _ in range(n))
    data = rng.randbytes(n)
    if name == "B64":
        return base64.b64encode(data).decode()
    if name in ("U64", "U64P"):
        encoded = base64.urlsafe_b64encode(data).decode()
        return encoded if name == "U64P" else encoded.rstrip("=")
    if name in ("PEM", "PEMN"):  # a key body in 64-character lines, joined by newlines or by a literal \n
        body = base64.b64encode(data).decode()
        return ("\n" if name == "PEM" else "\\n").join(body[i:i + 64] for i in range(0, len(body), 64))
    if name == "UUID":
        return str(uuid.UUID(bytes=rng.randbytes(16), version=4))
    if name == "JWT":
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
        payload = {"sub": str(rng.randrange(10**9)), "iat": 1700000000 + rng.randrange(10**7)}
        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{_field(rng, 'U64', 32)}"
    raise ValueError(f"unknown field {{{{{name}}}}}")


def _fill(template: str, rng: random.Random) -> str:
    return _FIELD.sub(lambda m: _field(rng, m.group(1), int(m.group(2) or 0)), template)


def load(path: Path = LABELLED) -> list[dict]:
    """The labelled rows with their fields filled in (deterministically: seeded by the row)."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rng = random.Random(zlib.crc32(line.encode()))
        if row["label"]:
            row["secret"] = _fill(row["secret"], rng)
        row["text"] = _fill(row["text"].replace("{{SECRET}}", "\0"), rng).replace("\0", row.get("secret", ""))
        rows.append(row)
    return rows


def leaked(secret: str, out: str, run: int = 12) -> bool:
    """Whether any of the secret is left in `out`: a line of a multi-line key body, or any 12
    characters of it in a row (a token cut short, such as a JWT without its signature)."""
    for piece in filter(None, re.split(r"\\n|\n", secret)):
        if any(piece[i:i + run] in out for i in range(max(1, len(piece) - run + 1))):
            return True
    return False


def score(rows: list[dict], pii=None) -> dict:
    """Redact every row; per kind: cases and hits (a positive whose secret is gone and `<KEY>` is
    in its place, a negative that lost anything to a `<KEY>`). Totals: precision and recall.
    `pii`: the module to score (default: dscoder.data.pii)."""
    if pii is None:
        from dscoder.data import pii
    takes_path = "path" in inspect.signature(pii.redact).parameters
    kinds: dict = defaultdict(lambda: {"label": None, "cases": 0, "hits": 0, "missed": []})
    tp = fp = positives = 0
    for row in rows:
        out, counts = pii.redact(row["text"], row.get("path")) if takes_path else pii.redact(row["text"])
        if row["label"]:
            hit = "<KEY>" in out and not leaked(row["secret"], out)
            positives += 1
            tp += hit
        else:  # any secret replaced (an email or address replaced is another detector's call)
            hit = counts["secret"] > 0
            fp += hit
        entry = kinds[row["kind"]]
        entry["label"] = row["label"]
        entry["cases"] += 1
        entry["hits"] += hit
        if hit != row["label"]:
            entry["missed"].append(row.get("path") or row["text"][:40])
    return {"kinds": dict(kinds), "tp": tp, "fp": fp, "positives": positives, "negatives": len(rows) - positives,
            "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / positives if positives else 1.0}


def table(result: dict) -> str:
    lines = ["| kind | label | cases | redacted | wrong |", "|---|---|---:|---:|---|"]
    for kind, e in sorted(result["kinds"].items(), key=lambda kv: (not kv[1]["label"], kv[0])):
        lines.append(f"| {kind} | {'secret' if e['label'] else 'look-alike'} | {e['cases']} | {e['hits']} | "
                     f"{', '.join(e['missed'])} |")
    redacted = result["tp"] + result["fp"]
    lines.append(f"\nprecision {result['precision']:.3f} ({result['tp']} true / {redacted} redacted), "
                 f"recall {result['recall']:.3f} ({result['tp']} / {result['positives']} secrets), "
                 f"{result['negatives']} look-alikes")
    return "\n".join(lines)


def _module(path: Path):
    """A pii module loaded from a file (an older version, to time against)."""
    spec = importlib.util.spec_from_file_location(f"pii_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def throughput(root: Path, runs: int = 3, pii=None) -> tuple[float, float, int]:
    """pii.redact over every .py file under root, one core: (median MB/s, MB, files). Timed in
    CPU seconds of this process, which other work on a shared machine disturbs less than the
    wall clock does. `pii`: the module to time (default: dscoder.data.pii)."""
    if pii is None:
        from dscoder.data import pii
    takes_path = "path" in inspect.signature(pii.redact).parameters  # versions before issue 17 do not
    texts = []
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts:  # the standard library only
            continue
        try:
            texts.append((str(p.relative_to(root)), p.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    mb = sum(len(t.encode()) for _, t in texts) / 1e6
    pii.redact('password = "x"; AKIA', "x.py") if takes_path else pii.redact('password = "x"; AKIA')
    rates = []
    for _ in range(runs):
        start = time.process_time()
        for path, text in texts:
            if takes_path:
                pii.redact(text, path)
            else:
                pii.redact(text)
        rates.append(mb / (time.process_time() - start))
    return statistics.median(rates), mb, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-save", action="store_true", help="print only, do not append to RESULTS.md")
    parser.add_argument("--stdlib", default=sysconfig.get_paths()["stdlib"],
                        help="tree timed for MB/s (its site-packages left out)")
    parser.add_argument("--baseline", type=Path, help="an older pii.py to time in the same run, e.g. "
                        "`git show HEAD:dscoder/data/pii.py > /tmp/pii_before.py`")
    args = parser.parse_args()
    result = score(load())
    rate, mb, files = throughput(Path(args.stdlib))
    speed = f"{rate:.1f} MB/s"
    if args.baseline:  # timed after and again before ours, so drifting load does not favour either
        before = throughput(Path(args.stdlib), pii=_module(args.baseline))[0]
        rate = (rate + throughput(Path(args.stdlib))[0]) / 2
        speed = f"{rate:.1f} MB/s (mean of a median before and after; {args.baseline.name}: {before:.1f} MB/s)"
        base = score(load(), pii=_module(args.baseline))
        speed += (f".\n\n{args.baseline.name} on the same set: precision {base['precision']:.3f}, "
                  f"recall {base['recall']:.3f} ({base['tp']} / {base['positives']} secrets, "
                  f"{base['fp']} look-alikes redacted)")
    command = "python benchmarks/secrets_eval.py"
    if args.baseline:
        command = (f"git show HEAD:dscoder/data/pii.py > {args.baseline}  # or the commit to compare with\n"
                   f"    {command} --baseline {args.baseline}")
    report = (f"### secrets_eval.py — {date.today()} — {platform.machine()}, Python {platform.python_version()}, "
              f"detect-secrets {metadata.version('detect-secrets')}\n\n"
              f"Secret redaction (`dscoder.data.pii`) on tests/data/secrets_labelled.jsonl; a positive counts when its "
              f"value is gone and `<KEY>` stands in, a look-alike when anything in it became `<KEY>`.\n\n"
              f"{table(result)}\n\n"
              f"Throughput of `pii.redact` over {args.stdlib} ({files} .py files, {mb:.1f} MB), one core, "
              f"CPU time, median of 3: {speed}.\n\nCommand:\n\n    {command}\n")
    print(report)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n" + report)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
