"""repo-completion: the cases (lines whose first use of a name needs another file), the shipped case file,
RepoBench's scoring, the prompts of both settings, and the whole run on a tiny model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.eval.config import EvalConfig, EvalError
from dscoder.eval.repo_completion import PromptBuilder, RepoCompletionConfig, cut_top, run
from dscoder.tasks import BENCHMARKS, load, repo_cases
from dscoder.tasks.repo_completion import edit_similarity, indel_distance, line_finished, ratio
from dscoder.tokenizer.tokenizer import Tokenizer
from repo_site import APP, EXPECTED, PACKAGE, ghost_row, make_site, write_cases


@pytest.fixture
def site(tmp_path) -> Path:
    return make_site(tmp_path)


# ---- cases ---------------------------------------------------------------------------------------

def test_cases_are_the_first_uses_of_names_defined_in_other_files(site):
    files = repo_cases.read_repository(site / "pkgx")
    found = repo_cases.repository_candidates(files, "pkgx")
    assert {(c.line, c.name, c.defined_in) for c in found} == EXPECTED
    lines = APP.split("\n")
    for c in found:
        assert c.file == "app.py" and c.target == lines[c.line - 1]
        name = c.name.split(".")[-1]
        assert name in c.target and not c.target.lstrip().startswith(("import", "from", "#"))
        assert files.texts[c.defined_in].split("\n")[c.defined_line - 1].lstrip().startswith(
            (f"def {name}", f"class {name}", f"{name} ="))
        earlier = "\n".join(lines[4:c.line - 1])  # after the imports: the name is not used before its line
        assert c.name not in earlier.replace('"""Build a Config from helper(size)."""', "").replace(
            "# A comment that names helper and Config: not a use.", "")
    assert "__pycache__/app.cpython-311.pyc" not in files.texts  # what the context may read: sources only


def test_a_name_bound_again_in_the_file_is_not_a_case(site):
    (site / "pkgx" / "app.py").write_text(APP + "\n\ndef shadow(Config):\n    return Config\n")
    found = repo_cases.repository_candidates(repo_cases.read_repository(site / "pkgx"), "pkgx")
    # line 12 stays a case, for `helper`, the other name first used there
    assert {(c.line, c.name) for c in found} == {(12, "helper"), (17, "util.shout"), (21, "m.LIMIT"),
                                                 (25, "util.whisper")}


def test_a_name_used_in_the_first_lines_is_not_a_case(site):
    early = APP.replace('VERSION = "1"', "VERSION = util.shout('1')")  # line 6: util.shout's first use
    (site / "pkgx" / "app.py").write_text(early)
    found = repo_cases.repository_candidates(repo_cases.read_repository(site / "pkgx"), "pkgx")
    assert {c.name for c in found} == {"Config", "m.LIMIT", "util.whisper"}


def test_building_is_deterministic_and_seeded(site, tmp_path):
    first = repo_cases.build([PACKAGE], per_repo=2, dirs=[site], per_file=3)
    assert first == repo_cases.build([PACKAGE], per_repo=2, dirs=[site], per_file=3)
    seeds = {tuple(r["line"] for r in repo_cases.build([PACKAGE], per_repo=2, seed=s, dirs=[site], per_file=3))
             for s in range(8)}
    assert len(seeds) > 1  # the seed chooses
    assert len(repo_cases.build([PACKAGE], dirs=[site])) == repo_cases.PER_FILE  # all four lines are in app.py
    row = first[0]
    assert row["root"] == "pkgx" and row["files"] == 4 and row["version"] == "unknown"
    files = repo_cases.read_repository(site / "pkgx")
    assert row["files_sha256"] == files.files_sha256 and row["file_sha256"] == files.sha256["app.py"]


def test_cases_round_robin_across_repositories(tmp_path):
    site = make_site(tmp_path)
    twin = site / "pkgy"
    twin.mkdir()
    for path in (site / "pkgx").glob("*.py"):
        (twin / path.name).write_text(path.read_text().replace("pkgx", "pkgy"))
    rows = repo_cases.build([PACKAGE, repo_cases.Repository("pkgy", "pkgy", "twin")], per_repo=3, dirs=[site],
                            per_file=4)
    assert [r["root"] for r in rows] == ["pkgx", "pkgy"] * 3


def test_the_shipped_case_file():
    path = Path(repo_cases.__file__).parent / "data" / "repo-completion-python.jsonl"
    cases = repo_cases.read_cases(path)
    roots = [c.root for c in cases]
    assert {c.root for c in cases} == {r.root for r in repo_cases.REPOSITORIES}
    assert len(cases) >= 300 and max(roots.count(r) for r in set(roots)) <= repo_cases.PER_REPO
    assert len(set(roots[:len(repo_cases.REPOSITORIES)])) == len(repo_cases.REPOSITORIES)  # round robin
    assert all(c.line >= repo_cases.MIN_LINE and c.file != c.defined_in for c in cases)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["version"] and r["repo"] == f"{r['dist']}=={r['version']}" for r in rows)
    # Here, on whatever is installed: cases of a package installed unchanged match it (else load raises);
    # the others are left out by name. None is lost.
    loaded = repo_cases.load(path)
    assert len(loaded.cases) + len(loaded.left_out) == len(cases)


def test_registered_with_a_runner_of_its_own():
    assert BENCHMARKS["repo-completion"].runner == "repo_completion"
    with pytest.raises(EvalError, match="dscoder eval repo-completion"):
        from dscoder import eval as evaluation

        evaluation.run(EvalConfig("repo-completion", limit=1))


def test_in_file_problems_for_the_registry(site, tmp_path):
    data = tmp_path / "data"
    (data / "repo-completion").mkdir(parents=True)
    write_cases(site, data / "repo-completion" / "python.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(repo_cases, "site_dirs", lambda extra=(): [site])
        problems = load("repo-completion", "python", data)
    assert len(problems) == 4 and not problems.left_out
    first = next(p for p in problems if p.task_id == "pkgx/app.py:12")
    assert first.prompt == "#pkgx/app.py\n" + "".join(line + "\n" for line in APP.split("\n")[:11])
    assert first.judge("    cfg = Config(helper(size))\n    return") and not first.judge("cfg = Config(size)")
    assert first.measures["edit_similarity"]("\n  cfg = Config(helper(size))  \n") == 1.0


# ---- scoring -------------------------------------------------------------------------------------

def test_edit_similarity_is_rapidfuzz_ratio():
    assert ratio("kitten", "sitting") == pytest.approx(61.53846153846154)  # rapidfuzz's fuzz.ratio values
    assert ratio("this is a test", "this is a test!") == pytest.approx(96.55172413793103)
    assert ratio("abc", "abd") == pytest.approx(100 * (1 - 2 / 6))  # a substitution is an insertion and a deletion
    assert ratio("", "") == 100.0 and ratio("abc", "") == 0.0 and ratio("same", "same") == 100.0


def test_indel_distance_against_a_plain_table():
    rng = random.Random(3)

    def table(a: str, b: str) -> int:  # edit distance with substitution cost 2, the textbook table
        d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (0 if a[i - 1] == b[j - 1] else 2))
        return d[-1][-1]

    for _ in range(200):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        assert indel_distance(a, b) == indel_distance(b, a) == table(a, b)


def test_only_the_first_non_empty_line_counts_stripped():
    assert edit_similarity("\n\n    return x + 1\nmore", "    return x + 1\n") == 100.0
    assert edit_similarity("return x", "    return x + 1\n") == pytest.approx(ratio("return x", "return x + 1"))
    assert edit_similarity("", "return x\n") == 0.0
    assert not line_finished("") and not line_finished("\n   \n  ret") and line_finished("\n  ret\n")


# ---- prompts -------------------------------------------------------------------------------------

@pytest.fixture
def tokenizer(fim_model_dir) -> Tokenizer:
    return Tokenizer.load(fim_model_dir)


def _index(site, loaded, tmp_path):
    from dscoder.repo.context import RepoIndex

    return RepoIndex(repo_cases.stage(loaded.files["pkgx"], "pkgx", tmp_path / "staged"))


def test_the_two_prompts_differ_by_the_repository_context_only(site, tmp_path, tokenizer):
    write_cases(site, tmp_path / "cases.jsonl")
    loaded = repo_cases.load(tmp_path / "cases.jsonl", [site])
    index = _index(site, loaded, tmp_path)
    builder = PromptBuilder(tokenizer, 512, RepoCompletionConfig(max_new_tokens=16))
    for case in loaded.cases:
        prompts = builder.build(case, loaded.files["pkgx"], index)
        prefix = "".join(line + "\n" for line in APP.split("\n")[:case.line - 1])
        assert prompts.in_file == "#pkgx/app.py\n" + prefix
        assert prompts.repo.endswith(prompts.in_file) and prompts.repo.startswith("#pkgx/")
        assert prompts.defined_in_context and f"#pkgx/{case.defined_in}" in prompts.repo
        assert case.target.strip() not in prompts.repo  # nothing at or after the cursor leaks
        assert 0 < prompts.context_tokens <= 512 and prompts.prefix_cut == 0


def test_a_context_budget_is_kept_and_a_long_file_loses_its_top_lines(site, tmp_path, tokenizer):
    write_cases(site, tmp_path / "cases.jsonl")
    loaded = repo_cases.load(tmp_path / "cases.jsonl", [site])
    index = _index(site, loaded, tmp_path)
    case = next(c for c in loaded.cases if c.line == 25)
    count = lambda text: len(tokenizer.encode(text, add_bos=False))  # noqa: E731
    none = PromptBuilder(tokenizer, 512, RepoCompletionConfig(max_new_tokens=16, context_tokens=0))
    assert none.build(case, loaded.files["pkgx"], index).repo == none.build(case, loaded.files["pkgx"], index).in_file
    small = PromptBuilder(tokenizer, 512, RepoCompletionConfig(max_new_tokens=16, context_tokens=40)).build(
        case, loaded.files["pkgx"], index)
    assert small.context_tokens <= 40
    # A window the file alone would fill: the file gets half of what the answer leaves, the context the rest.
    builder = PromptBuilder(tokenizer, 200, RepoCompletionConfig(max_new_tokens=16))
    tight = builder.build(case, loaded.files["pkgx"], index)
    assert tight.prefix_cut > 0 and tight.in_file.startswith("#pkgx/app.py\n")
    assert count(tight.in_file) <= (200 - builder.reserve) // 2 < count("#pkgx/app.py\n" + APP)
    assert tight.context_tokens > 0 and count(tight.repo) <= 200 - 16 and tight.in_file.endswith("def quiet(name):\n")
    capped = PromptBuilder(tokenizer, 512, RepoCompletionConfig(max_new_tokens=16, file_tokens=60)).build(
        case, loaded.files["pkgx"], index)
    assert count(capped.in_file) <= 60 and capped.prefix_cut > 0 and capped.repo.endswith(capped.in_file)
    assert cut_top("a\nb\nc\n", 1, lambda t: t.count("\n")) == "c\n"


# ---- the run -------------------------------------------------------------------------------------

def test_both_settings_scored_and_left_out_cases_named(site, tmp_path, fim_model_dir):
    rows = write_cases(site, tmp_path / "cases.jsonl")
    write_cases(site, tmp_path / "cases.jsonl", [ghost_row(rows[0])])
    cfg = RepoCompletionConfig(model=str(fim_model_dir), cases=tmp_path / "cases.jsonl", site=site,
                               out=tmp_path / "out", max_new_tokens=8, progress=False)
    heard = []
    summary = run(cfg, on_left_out=lambda n, note: heard.append((n, note)))
    numbers = summary.numbers
    assert summary.new_answers == 8 and numbers["cases"] == 4
    assert numbers["left_out"] == {"ghostpkg/app.py:12": "ghostpkg is not installed (the cases are of ghostpkg 9.9)"}
    assert heard and heard[0][0] == 1 and "ghostpkg" in heard[0][1]
    answers = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert sorted((r["task_id"], r["setting"]) for r in answers) == sorted(
        (f"pkgx/app.py:{line}", s) for line, _, _ in EXPECTED for s in ("in-file", "repo"))
    by = {(r["task_id"], r["setting"]): r for r in answers}
    for line, _, _ in EXPECTED:
        infile, repo = by[(f"pkgx/app.py:{line}", "in-file")], by[(f"pkgx/app.py:{line}", "repo")]
        assert repo["prompt_tokens"] > infile["prompt_tokens"] and repo["defined_in_context"]
        assert repo["prompt_tokens"] - infile["prompt_tokens"] == pytest.approx(repo["context_tokens"], abs=4)
        for r in (infile, repo):
            assert 0 <= r["edit_similarity"] <= 100 and r["exact_match"] in (0.0, 1.0) and r["seconds"] > 0
            assert r["edit_similarity"] == pytest.approx(edit_similarity(r["completion"], r["target"]), abs=1e-3)
    settings = numbers["settings"]
    assert settings["repo"]["prompt_tokens"] > settings["in-file"]["prompt_tokens"]
    assert numbers["gain"]["edit_similarity"] == pytest.approx(
        settings["repo"]["edit_similarity"] - settings["in-file"]["edit_similarity"])
    assert list(numbers["packages"]) == ["pkgx"] and numbers["packages"]["pkgx"]["in-file"]["cases"] == 4
    report = (tmp_path / "out" / "report.md").read_text()
    assert "gain (repo - in-file)" in report and "ghostpkg" in report and "1 cases left out" in report
    assert (tmp_path / "out" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run(cfg)  # resumed: nothing asked again, the same numbers
    assert again.new_answers == 0 and again.numbers["settings"] == numbers["settings"]
    with pytest.raises(EvalError, match="context_tokens"):
        run(RepoCompletionConfig(**{**cfg.__dict__, "context_tokens": 10}))
    with pytest.MonkeyPatch.context() as mp:  # the context's code changed since: its prompts would differ
        mp.setattr("dscoder.eval.repo_completion.context_code", lambda: "0" * 64)
        with pytest.raises(EvalError, match="context_code"):
            run(cfg)


def test_a_killed_run_resumes_with_the_answers_it_lacks(site, tmp_path, fim_model_dir):
    write_cases(site, tmp_path / "cases.jsonl")
    cfg = RepoCompletionConfig(model=str(fim_model_dir), cases=tmp_path / "cases.jsonl", site=site,
                               out=tmp_path / "out", max_new_tokens=4, progress=False, limit=2)
    run(cfg)
    samples = tmp_path / "out" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # the last answer torn by a kill
    resumed = run(RepoCompletionConfig(**{**cfg.__dict__, "limit": None}))
    assert resumed.new_answers == 8 - 3 and resumed.numbers["cases"] == 4


def test_the_command_prints_both_settings_and_the_gain(site, tmp_path, fim_model_dir):
    write_cases(site, tmp_path / "cases.jsonl")
    result = CliRunner().invoke(app, ["eval", "repo-completion", "-m", str(fim_model_dir), "--cases",
                                      str(tmp_path / "cases.jsonl"), "--site", str(site), "-o", str(tmp_path / "o"),
                                      "--max-tokens", "4", "--no-progress", "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert "in-file" in result.output and "gain (repo - in-file)" in result.output and "pkgx" in result.output
    bad = CliRunner().invoke(app, ["eval", "repo-completion", "--context-tokens", "-1", "--cases",
                                   str(tmp_path / "cases.jsonl")])
    assert bad.exit_code == 2 and "--context-tokens must be 0 or more" in bad.output
