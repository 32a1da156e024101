"""Repository context on the server (`dscoder serve --repo`): /infill with no input_extra, and the
`repo` field on /infill and /v1/completions, each compared with `dscoder.infer.generate` on the
prompt the server is documented to build from the same index."""

from __future__ import annotations

from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from dscoder.hub import load_model  # noqa: E402
from dscoder.infer.generate import SamplingParams, generate  # noqa: E402
from dscoder.repo.context import RepoIndex, with_context  # noqa: E402
from dscoder.serve.api import ServerState, create_app  # noqa: E402
from dscoder.serve.engine import Engine, EngineConfig  # noqa: E402
from dscoder.serve.repo import RepoSource  # noqa: E402
from dscoder.tokenizer.fim import fim_prompt, fim_tokens  # noqa: E402
from dscoder.tokenizer.tokenizer import Tokenizer  # noqa: E402
from serve_live import LiveServer, settle  # noqa: E402

FILES = {
    "pkg/__init__.py": "",
    "pkg/geometry.py": "def scaled_area(width, height, factor):\n    return width * height * factor * factor\n",
    "pkg/names.py": "class Registry:\n    def add(self, name):\n        pass\n",
}
PREFIX = "from pkg.geometry import scaled_area\n\n\ndef report(w, h):\n    r = Registry()\n    return "
SUFFIX = "\n"


@pytest.fixture(scope="module")
def tiny(fim_model_dir):
    return load_model(fim_model_dir), Tokenizer.load(fim_model_dir)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def http(tiny, repo):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=256, block_size=16, max_running=8, max_waiting=16))
    state = ServerState("tiny", engine=engine.start(), repo=RepoSource(RepoIndex(repo)))
    with LiveServer(create_app(state)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        client.engine = engine
        yield client


@pytest.fixture(autouse=True)
def _settled(request):
    yield
    if "http" in request.fixturenames:
        settle(request.getfixturevalue("http").engine)


def expected(tiny, repo: Path, path, prefix: str, suffix: str | None, reserve: int, max_tokens: int) -> str:
    model, tok = tiny
    full, _ = with_context(RepoIndex(repo), path, prefix, suffix or "", model.config.max_position_embeddings, reserve,
                           lambda s: len(tok.encode(s, add_bos=False)))
    prompt = full if suffix is None else fim_prompt(full, suffix, fim_tokens(tok))
    params = SamplingParams(max_new_tokens=max_tokens, stop_token_ids=(tok.eos_id,))
    return generate(model, tok, prompt, params)[0].text


def test_infill_without_input_extra_reads_the_repository(http, tiny, repo):
    r = http.post("/infill", json={"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 12,
                                   "repo": {"file": "pkg/report.py"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == expected(tiny, repo, "pkg/report.py", PREFIX, SUFFIX, 12 + 8, 12)
    blocks = body["repo_context"]["blocks"]
    assert [(b["path"], b["kind"]) for b in blocks] == [("pkg/geometry.py", "import"), ("pkg/names.py", "definition")]
    assert body["repo_context"]["tokens"] == sum(b["tokens"] for b in blocks) > 0
    # no repo field and no input_extra: the server's --repo is read all the same (no cursor file: names only)
    plain = http.post("/infill", json={"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 12}).json()
    assert [b["path"] for b in plain["repo_context"]["blocks"]] == ["pkg/geometry.py", "pkg/names.py"]
    # the client's own context wins over the server's
    own = http.post("/infill", json={"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 12,
                                     "input_extra": [{"filename": "x.py", "text": "y = 1"}]}).json()
    assert "repo_context" not in own


def test_completions_with_repo_put_the_context_before_the_prompt(http, tiny, repo):
    r = http.post("/v1/completions", json={"model": "tiny", "prompt": PREFIX, "max_tokens": 10, "temperature": 0,
                                           "repo": {"file": "pkg/report.py"}})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == expected(tiny, repo, "pkg/report.py", PREFIX, None, 10 + 8, 10)
    capped = http.post("/v1/completions", json={"model": "tiny", "prompt": PREFIX, "max_tokens": 10, "temperature": 0,
                                                "repo": {"file": "pkg/report.py", "max_tokens": 0}})
    bare = http.post("/v1/completions", json={"model": "tiny", "prompt": "#pkg/report.py\n" + PREFIX, "max_tokens": 10,
                                              "temperature": 0})
    assert capped.json()["usage"]["prompt_tokens"] == bare.json()["usage"]["prompt_tokens"]
    assert capped.json()["usage"]["prompt_tokens"] < r.json()["usage"]["prompt_tokens"]
