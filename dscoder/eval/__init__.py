"""The evaluation harness: DeepSeek-Coder's benchmarks with its own protocols, judged in the sandbox.

`run(EvalConfig(...))` is one whole evaluation (what `dscoder eval` does): the problems come
from `dscoder.tasks`; completions from a model through the serving engine (`batched`) or
one at a time, or from a file; the loop that generates and executes is `runner.run`; the
numbers are written by `report.write`.
"""

from dscoder.eval.config import EvalConfig, EvalError
from dscoder.eval.evaluate import Summary, run

__all__ = ["EvalConfig", "EvalError", "Summary", "run"]
