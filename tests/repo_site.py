"""A small installed package for repo-completion's tests: `pkgx` in a site-packages folder of its own, whose
app.py uses names from models.py and util.py, each first on a known line."""

from __future__ import annotations

import json
from pathlib import Path

from dscoder.tasks import repo_cases

MODELS = '''"""Models."""

LIMIT = 3


class Config:
    def __init__(self, size):
        self.size = size


def helper(value):
    return value * LIMIT
'''

UTIL = '''def shout(text):
    return text.upper()


def whisper(text):
    return text.lower()
'''

APP = '''"""The app: uses names from models and util."""
from pkgx.models import Config, helper
from . import util
import pkgx.models as m

VERSION = "1"


# A comment that names helper and Config: not a use.
def make(size):
    """Build a Config from helper(size)."""
    cfg = Config(helper(size))
    return cfg


def loud(name):
    return util.shout(name)


def limit():
    return m.LIMIT + 1


def quiet(name):
    return util.whisper(name)


def again(size):
    return Config(size)
'''

# (line, name, defined_in) of every line that must be a case, and its text
EXPECTED = {(12, "Config", "models.py"), (17, "util.shout", "util.py"), (21, "m.LIMIT", "models.py"),
            (25, "util.whisper", "util.py")}
PACKAGE = repo_cases.Repository("pkgx", "pkgx", "the tests' package")


def make_site(base: Path) -> Path:
    """`base/site-packages/pkgx/` with the four files (and a __pycache__ the reader must ignore)."""
    site = base / "site-packages"
    package = site / "pkgx"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    (package / "util.py").write_text(UTIL)
    (package / "app.py").write_text(APP)
    (package / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00junk")
    return site


def write_cases(site: Path, path: Path, extra: list[dict] = ()) -> list[dict]:
    """The package's case file (every candidate: four cases), plus `extra` rows."""
    rows = repo_cases.build([PACKAGE], per_repo=10, dirs=[site], per_file=10) + list(extra)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def ghost_row(row: dict) -> dict:
    """A case of a package that is not installed: left out by name."""
    return {**row, "task_id": "ghostpkg/app.py:12", "root": "ghostpkg", "dist": "ghostpkg", "version": "9.9"}
