"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models
Trained on Code": with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k),
computed as a running product so large n does not overflow."""

from __future__ import annotations

from collections.abc import Iterable

KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    import numpy as np  # here, not at CLI start-up

    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Iterable[int] = KS) -> dict[str, float]:
    """pass@k averaged over problems, for each k no larger than the smallest sample count."""
    import numpy as np

    counts = list(counts)
    if not counts:
        return {}
    fewest = min(n for n, _ in counts)
    return {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in ks if k <= fewest}
