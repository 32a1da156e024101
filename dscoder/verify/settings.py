"""The settings of one verified generation, declared once: the CLI's options (`--samples`,
`--tests`, ...) are generated from these fields, and the server's `verify` object carries the
same names and defaults (`dscoder.serve.protocol.VerifyOptions`)."""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.errors import ConfigError
from dscoder.settings import setting

MAX_SAMPLES = 16  # candidates per request at most (the server's limit too)


@dataclass(frozen=True)
class VerifySettings:
    """How many candidates, how they are sampled and run, and which tests they must pass."""

    n: int = setting(8, f"Candidates to sample and run (1-{MAX_SAMPLES}); the first is greedy, so 1 is plain "
                        "greedy decoding checked by the tests.", "--samples")
    temperature: float = setting(0.8, "Sampling temperature of candidates 2..N (CodeT's 0.8; the first is "
                                      "greedy).", "--sample-temperature")
    top_p: float = setting(0.95, "Nucleus sampling of candidates 2..N (CodeT's 0.95).", "--sample-top-p")
    seed: int = setting(0, "Candidate i (i >= 2) samples with seed + i, so a candidate is the same whatever N is.",
                        "--sample-seed")
    timeout: float = setting(10.0, "Wall-clock seconds each candidate's sandboxed test run may take (a hang "
                                   "is a timeout verdict).", "--verify-timeout")
    max_tokens: int | None = setting(None, "Most new tokens per candidate (the command's --max-tokens).", cli=False)
    tests: str | None = setting(None, "A Python test file the candidates must pass: asserts run as a script, "
                                      "pytest-style test_* functions, unittest TestCases (default: the examples "
                                      "in the prompt's docstrings).", "--tests")
    model_tests: bool = setting(False, "Ask the model to write asserts first (separately, before the candidates, "
                                       "never shown to them) and use them as tests too.", "--model-tests")
    model_test_samples: int = setting(4, "Generations asked for model-written tests (the first greedy).",
                                      cli=False)
    workers: int | None = setting(None, "Sandboxes running at once (default: one per CPU core).", cli=False)

    def check(self) -> None:
        """Refuse impossible numbers before anything loads; the message names the option."""
        if not 1 <= self.n <= MAX_SAMPLES:
            raise ConfigError(f"--samples must be between 1 and {MAX_SAMPLES}, got {self.n}")
        if self.temperature < 0:
            raise ConfigError(f"--sample-temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--sample-top-p must be in (0, 1], got {self.top_p}")
        if not 0 < self.timeout <= 600:
            raise ConfigError(f"--verify-timeout must be in (0, 600] seconds, got {self.timeout}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
