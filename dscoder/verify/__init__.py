"""Execution-verified generation: sample N candidates, run each against tests in the sandbox,
return the first that passes (or the best, with its failures). CodeT (Chen et al., 2022,
"CodeT: Code Generation with Generated Tests") and AlphaCode (Li et al., 2022, "Competition-Level
Code Generation with AlphaCode") filter samples by executing them; this is that idea behind
`--verify` on the command line and a `verify` object on the API.

- `tests.py`      where tests come from (a file, asserts) and the plan the sandbox runs
- `examples.py`   the examples a prompt already holds (doctests, `f(x) == y`) as checks
- `model_tests.py` asserts the model writes first, apart from the candidates
- `candidates.py` N candidates in one engine batch, the first greedy
- `program.py`    a candidate and its tests as one checked program; its outcome
- `checks_runner.py` the code that runs the checks inside the sandbox, guarding them from the candidate
- `select.py`     runs in parallel sandboxes, verdicts as they come, the choice
- `run.py`        the whole, for the CLI, the server and the benchmark
- `settings.py`   `VerifySettings`, the options

Layering: a peer of `tasks` (it may import `execute`, `infer`, `tokenizer` and below; `serve`,
`eval` and `cli` import it). The engine it samples from is passed in, never imported.
"""
