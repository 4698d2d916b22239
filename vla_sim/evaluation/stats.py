"""Confidence intervals for success rates."""

from __future__ import annotations

import math


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``k`` successes in ``n`` trials.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0 or k = n,
    which is where small robot evaluations live. ``z=1.96`` gives a 95% interval; n = 0 gives
    the uninformative (0, 1).
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when the closed intervals ``a`` and ``b`` share a point."""
    return a[0] <= b[1] and b[0] <= a[1]
