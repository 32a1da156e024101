"""The evaluation harness: DeepSeek-Coder's benchmarks with its own protocols, judged in the sandbox.

The problems come from `dscoder.tasks`; the loop that generates and executes is
`runner.run`; the numbers are written by `report.write`.
"""
