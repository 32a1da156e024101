"""Secrets out of the corpus (issue 17): a planted `DATABASE_PASSWORD = "..."` went verbatim into
`train-00000.bin`, because PII redaction ran detect-secrets' key-shaped detectors but not its
KeywordDetector. These tests run the redaction over the hand-labelled set in
tests/data/secrets_labelled.jsonl (secrets of 20 kinds, and look-alikes that must stay) and a
real `dscoder data build` over a tree with the planted file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.data import pii
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.tokenizer.train import train_tokenizer

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("secrets_eval", ROOT / "benchmarks" / "secrets_eval.py")
secrets_eval = importlib.util.module_from_spec(_spec)
sys.modules["secrets_eval"] = secrets_eval
_spec.loader.exec_module(secrets_eval)

# The kinds issue 17 names (keyword assignments, high-entropy strings, private keys, cloud keys):
# every labelled case of these must go. The set's two known misses are of other kinds, each
# documented in its row (an annotated assignment, a URL with no user before the password).
NAMED_KINDS = {"keyword_password", "high_entropy_base64", "high_entropy_hex", "private_key", "aws_key",
               "gcp_api_key", "azure_storage_key"}


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return secrets_eval.load()


@pytest.fixture(scope="module")
def scored(labelled) -> dict:
    result = secrets_eval.score(labelled)
    print("\n" + secrets_eval.table(result))
    return result


def test_the_labelled_set_is_big_enough(labelled):
    positives = [r for r in labelled if r["label"]]
    assert len(positives) >= 30 and len({r["kind"] for r in positives}) >= 10
    assert len(labelled) - len(positives) >= 30
    assert NAMED_KINDS <= {r["kind"] for r in positives}


def test_precision_and_recall_on_the_labelled_set(scored):
    """Recall 1.0 on the kinds the issue names; over all kinds, recall and precision >= 0.95
    (of 61 secrets, the 2 documented misses are allowed and one more; of 51 look-alikes, 3
    redacted would still pass, each costing only a `<KEY>` where a value was)."""
    missed = {kind: e["missed"] for kind, e in scored["kinds"].items() if e["label"] and kind in NAMED_KINDS
              and e["missed"]}
    assert not missed, f"secrets of the issue's kinds left in place: {missed}"
    assert scored["recall"] >= 0.95, secrets_eval.table(scored)
    assert scored["precision"] >= 0.95, secrets_eval.table(scored)


@pytest.mark.parametrize("kind", ["keyword_password", "basic_auth_url"])
def test_only_the_value_is_replaced(labelled, kind):
    """The line stays: names, quotes, `password=` and URLs keep their text; every copy of the value
    in the file (an assertion below the assignment) becomes `<KEY>`."""
    for row in labelled:
        if row["kind"] == kind and row["label"]:
            out, counts = pii.redact(row["text"], row["path"])
            if row["secret"] in out:
                continue  # a documented miss: scored by the test above
            lines = row["text"].splitlines()
            assert len(out.splitlines()) == len(lines), row["path"]
            for line, redacted in zip(lines, out.splitlines()):
                if row["secret"] in line:
                    assert redacted == line.replace(row["secret"], "<KEY>"), row["path"]
            assert counts["secret"] >= row["text"].count(row["secret"])


def test_keyword_values_by_file_type():
    """detect-secrets' regexes per file type: unquoted values count in config, shell and .env
    files, not in code, where `password = hunter_two` names a variable."""
    assert pii.redact("password: s3cr3tP@ss\n", "app.yml")[0] == "password: <KEY>\n"
    assert pii.redact("export API_TOKEN=9f3Kd02mQxLp\n", "run.sh")[0] == "export API_TOKEN=<KEY>\n"
    assert pii.redact("DB_PASSWORD=pg-Pr0d-2024!\n", ".env")[0] == "DB_PASSWORD=<KEY>\n"
    assert pii.redact("password = hunter_two2\n", "auth.py")[1]["secret"] == 0
    assert pii.redact("password = hunter_two2\n")[1]["secret"] == 0  # no path: code's rules


def test_secret_in_a_url_wins_over_the_email_it_looks_like(labelled):
    """`https://octo:<token>@github.com` reads as an email from the token on; the token is what
    must go, and the host stays."""
    row = next(r for r in labelled if r["path"] == ".git-credentials")
    out, counts = pii.redact(row["text"], row["path"])
    assert out == "https://octo:<KEY>@github.com\n" and counts["email"] == 0


SETTINGS = '''"""Deployment settings for the reporting service."""

import os

DATABASE_HOST = os.environ.get("DATABASE_HOST", "db.internal")
DATABASE_USER = "reporting"
DATABASE_PASSWORD = "{password}"
POOL_SIZE = 8


def database_url():
    return f"postgresql://{{DATABASE_USER}}@{{DATABASE_HOST}}/reports"
'''

APP = '''from settings import database_url, POOL_SIZE


def connect(driver):
    """Open the pool the report jobs share."""
    return driver.create_pool(database_url(), size=POOL_SIZE)
'''


def test_planted_database_password_is_gone_from_a_real_build(tmp_path):
    """The issue's finding, end to end: `dscoder data build` over a tree holding the planted
    settings file (and a YAML config, whose unquoted value only the config rules catch: the build
    must pass each file's name to the detector); the shard decoded back holds `<KEY>` where each
    password was, and neither password anywhere."""
    password = "hunter2-prod-XyZ"
    src = tmp_path / "src" / "reporting"
    src.mkdir(parents=True)
    (src / "settings.py").write_text(SETTINGS.format(password=password))
    (src / "app.py").write_text(APP)
    (src / "config.yml").write_text("database:\n  host: db.internal\n  password: s3cr3tP@ss\n")
    train_tokenizer([src], 400, tmp_path / "tok", show_progress=False)
    tokenizer_path = tmp_path / "tok" / "tokenizer.json"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "build", str(src), "--out", str(out), "--tokenizer", str(tokenizer_path),
                                      "--fim-rate", "0", "--val-fraction", "0", "--no-decontaminate",
                                      "--workers", "1", "--seq-len", "64"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    shards = [out / s["file"] for s in manifest["splits"]["train"]["shards"]]
    assert shards
    tokens = np.concatenate([np.fromfile(f, dtype=manifest["dtype"]) for f in shards])
    text = Tokenizer.load(str(tokenizer_path)).decode(tokens.tolist())
    assert 'DATABASE_PASSWORD = "<KEY>"' in text  # the file is in the shard, its value replaced
    assert "  password: <KEY>\n" in text
    assert password not in text and "hunter2" not in text and "s3cr3tP@ss" not in text
    assert manifest["pii_redacted"]["secret"] == 2


def test_keyword_prefilter_finds_what_the_full_search_finds(labelled):
    """The prefilter (literal stems in the lowercased text) skips no keyword that detect-secrets'
    case-insensitive alternation would find, on the labelled set and on real code."""
    import inspect
    import smtplib
    import urllib.request

    hint = pii._keyword_tables()[0]
    texts = [row["text"] for row in labelled] + [inspect.getsource(m) for m in (smtplib, urllib.request)]
    texts.append("KEY_PASSWORD = 'x'; userPass = 'y'; Contraseña = 'z'; PWD=1; İ secret = 'w'")
    for text in texts:
        assert [m.span() for m in pii._keyword_hits(text, hint)] == [m.span() for m in hint.finditer(text)]
