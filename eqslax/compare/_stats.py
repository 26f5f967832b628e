r"""Means over seeds with Student-t confidence intervals, and paired differences.

For values $x_1..x_n$ over seeds, the mean $\bar x$ and the half-width of its
confidence interval at level $1-\alpha$ are

$$\bar x \pm t_{1-\alpha/2,\,n-1}\,\frac{s}{\sqrt n},\qquad
s^2 = \frac{1}{n-1}\sum_i (x_i - \bar x)^2 .$$

Two rules trained from the same seeds are compared *paired*: the interval is that of
the per-seed differences $d_i = a_i - b_i$. When it contains 0 the two rules are not
distinguishable with these seeds. With one seed there is no interval (`nan`).
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over seeds, the half-width of its interval and the number of seeds."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def contains_zero(self) -> bool:
        return not math.isnan(self.half_width) and self.low <= 0.0 <= self.high

    def format(self, digits: int = 3) -> str:
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_dict(self) -> dict:
        half = None if math.isnan(self.half_width) else self.half_width
        return {"mean": self.mean, "ci95_half_width": half, "n": self.n}


def mean_ci(values, level: float = 0.95) -> Interval:
    """Mean of `values` over seeds with its Student-t interval at `level`."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci: needs at least one value, got none.")
    if x.size == 1:
        return Interval(float(x[0]), math.nan, 1)
    from scipy import stats  # a dependency of jax; imported only when needed

    t = stats.t.ppf(0.5 + level / 2, x.size - 1)
    return Interval(float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size)), int(x.size))


def paired_difference(a, b, level: float = 0.95) -> Interval:
    """Mean of the per-seed differences `a - b` with its interval (paired by seed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"paired_difference: one value per seed each, got {a.shape} and {b.shape}."
        )
    return mean_ci(a - b, level)
