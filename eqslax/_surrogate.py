"""Surrogate gradients: a Heaviside step forward, a smooth derivative backward.

Every surrogate computes the same forward function, the Heaviside step with the
convention $H(0) = 1$, i.e. a neuron spikes when its membrane reaches the
threshold, `v >= threshold`. Only the derivative used by automatic differentiation
differs. Concrete classes define `derivative(x)`; the base class applies it through
a single `eqx.filter_custom_jvp`, so forward mode (`jvp`, `jacfwd`), reverse mode
(`grad`, `jacrev`), `vmap` and `jit` all see the same rule. Second derivatives
are $\\sigma''(x)$ on the spike and $\\sigma'(x)$ wherever the forward
spike feeds later steps, with one pitfall below.

**Second derivatives through** `lax.scan` **(and** `simulate`**).** When JAX runs
reverse mode through a scan it partially evaluates the scan body, and partial
evaluation replaces a `custom_jvp` call by its primal function (JAX assumes only a
linear function is being built). Differentiating that reverse pass again --
`grad(grad(f))`, `jacfwd(grad(f))`, `jax.hessian(f)` -- then sees the Heaviside
step, of derivative 0, on the forward spikes: the surrogate's terms through the reset and
later steps vanish, and the result is the derivative of the first-order surrogate
gradient with the spike pattern frozen, not the surrogate Hessian that the same loop
written out in Python gives in every order. Orders whose *inner* derivative is forward
mode (`jacfwd(jacfwd(f))`, `jacrev(jacfwd(f))`, `grad` of a `jvp`) agree with the
unrolled loop; `eqslax.hessian` and `eqslax.hvp` use them. Plain
`jax.custom_jvp` behaves the same, so this is JAX's scan, not this module's rule.

**Normalisation.** Libraries disagree on how surrogates are scaled. eqslax scales
each one so that it is the derivative of a smooth step rising from 0 to 1, i.e.
$\\int \\sigma'(x)\\,dx = 1$ (`Arctan`, `Sigmoid`, `Boxcar`, `Gaussian`,
`Exponential`), *except* where a paper fixed the scale and the reference results
depend on it: `FastSigmoid` keeps SuperSpike's peak of 1, `Triangle` keeps e-prop's
dampening factor as its peak, `MultiGaussian` keeps Yin et al.'s form and
`StraightThrough` is 1 everywhere. Each docstring states its formula.
"""

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_hyperparameter

__all__ = [
    "AbstractSurrogate",
    "Arctan",
    "Boxcar",
    "CustomSurrogate",
    "Exponential",
    "FastSigmoid",
    "Gaussian",
    "MultiGaussian",
    "Sigmoid",
    "StraightThrough",
    "Triangle",
]


@eqx.filter_custom_jvp
def _heaviside(x, surrogate):
    return jnp.where(x >= 0, 1.0, 0.0).astype(x.dtype)


@_heaviside.def_jvp
def _heaviside_jvp(primals, tangents):
    x, surrogate = primals
    tx, _ = tangents  # the step does not depend on the surrogate's hyperparameters
    out = _heaviside(x, surrogate)
    if tx is None:
        return out, None
    return out, surrogate.derivative(x) * tx


def _float(value: ArrayLike, name: str, owner: str, low: float = 0, strict=True) -> Array:
    # Hyperparameters are array leaves so that they can be vmapped over. Concrete values
    # are checked: finite, and > low (or >= low); a zero width makes gradients non-finite.
    arr = jnp.asarray(value, dtype=jnp.result_type(float))
    return check_hyperparameter(arr, value, name, owner, low, strict=strict)


class AbstractSurrogate(eqx.Module):
    r"""A spike function: $H(x)$ forward, $\sigma'(x)$ backward.

    `x` is the distance to threshold, `v - threshold`. `__call__` returns
    $H(x) = 1$ for `x >= 0` and 0 otherwise (same dtype as `x`); its derivative
    under every JAX transformation is `derivative(x)`.
    """

    @abc.abstractmethod
    def derivative(self, x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The closed-form surrogate derivative $\\sigma'(x)$."""

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return _heaviside(x, self)


class FastSigmoid(AbstractSurrogate):
    r"""SuperSpike (Zenke & Ganguli 2018): $\sigma'(x) = 1/(1 + k|x|)^2$.

    Peak 1 at threshold, as in SuperSpike, Slax and snnTorch (integral $2/k$).

    **Arguments:** `slope` $k$ (default 25).
    """

    slope: Float[Array, "*hyper"]

    def __init__(self, slope: float | Float[ArrayLike, "*hyper"] = 25.0):
        self.slope = _float(slope, "slope", type(self).__name__)

    def derivative(self, x):
        return 1.0 / (1.0 + self.slope * jnp.abs(x)) ** 2


class Arctan(AbstractSurrogate):
    r"""Arctangent (Fang et al. 2021): $\sigma'(x) = \frac{\alpha/2}{1 + (\pi\alpha x/2)^2}$.

    The derivative of $\frac{1}{\pi}\arctan(\pi\alpha x/2) + \frac12$: integral 1,
    peak $\alpha/2$ (the snnTorch and Slax form).

    **Arguments:** `alpha` (default 2).
    """

    alpha: Float[Array, "*hyper"]

    def __init__(self, alpha: float | Float[ArrayLike, "*hyper"] = 2.0):
        self.alpha = _float(alpha, "alpha", "Arctan")

    def derivative(self, x):
        return (self.alpha / 2) / (1.0 + (math.pi * self.alpha * x / 2) ** 2)


class Sigmoid(AbstractSurrogate):
    r"""Logistic: $\sigma'(x) = k\,S(kx)\,(1 - S(kx))$, $S(z) = 1/(1+e^{-z})$.

    The derivative of $S(kx)$: integral 1, peak $k/4$.

    **Arguments:** `slope` $k$ (default 5).
    """

    slope: Float[Array, "*hyper"]

    def __init__(self, slope: float | Float[ArrayLike, "*hyper"] = 5.0):
        self.slope = _float(slope, "slope", type(self).__name__)

    def derivative(self, x):
        s = 1.0 / (1.0 + jnp.exp(-self.slope * x))
        return self.slope * s * (1.0 - s)


class Triangle(AbstractSurrogate):
    r"""Piecewise linear (Bellec et al. 2018, e-prop):
    $\sigma'(x) = \gamma\max(0, 1 - |x|/w)$.

    Peak $\gamma$ (e-prop's dampening factor), support $|x| < w$.

    **Arguments:** `gamma` (default 0.3), `width` $w$ (default 1, e-prop's
    threshold-normalised form with threshold 1).
    """

    gamma: Float[Array, "*hyper"]
    width: Float[Array, "*hyper"]

    def __init__(
        self,
        gamma: float | Float[ArrayLike, "*hyper"] = 0.3,
        width: float | Float[ArrayLike, "*hyper"] = 1.0,
    ):
        self.gamma = _float(gamma, "gamma", type(self).__name__, strict=False)
        self.width = _float(width, "width", type(self).__name__)

    def derivative(self, x):
        return self.gamma * jnp.maximum(0.0, 1.0 - jnp.abs(x) / self.width)


class Boxcar(AbstractSurrogate):
    r"""Rectangular: $\sigma'(x) = \frac{1}{w}\,\mathbb{1}[|x| < w/2]$. Integral 1.

    **Arguments:** `width` $w$ (default 1).
    """

    width: Float[Array, "*hyper"]

    def __init__(self, width: float | Float[ArrayLike, "*hyper"] = 1.0):
        self.width = _float(width, "width", type(self).__name__)

    def derivative(self, x):
        inside = jnp.abs(x) < self.width / 2
        return jnp.where(inside, 1.0 / self.width, 0.0).astype(jnp.result_type(x, float))


def _normal_pdf(x, mean, std):
    return jnp.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


class Gaussian(AbstractSurrogate):
    r"""Gaussian: $\sigma'(x) = \mathcal N(x; 0, s)$, the normal pdf. Integral 1.

    **Arguments:** `std` $s$ (default 0.5).
    """

    std: Float[Array, "*hyper"]

    def __init__(self, std: float | Float[ArrayLike, "*hyper"] = 0.5):
        self.std = _float(std, "std", "Gaussian")

    def derivative(self, x):
        return _normal_pdf(x, 0.0, self.std)


class MultiGaussian(AbstractSurrogate):
    r"""Multi-Gaussian (Yin et al. 2021), the Slax `multi_gauss` form.

    $$
    \sigma'(x) = \gamma\big[(1+h)\,\mathcal N(x;0,\ell) - h\,\mathcal N(x;\ell,k\ell)
                 - h\,\mathcal N(x;-\ell,k\ell)\big]
    $$

    **Arguments:** `gamma` $\gamma$ (0.5), `lens` $\ell$ (0.3), `scale`
    $k$ (6), `height` $h$ (0.15). $\sigma'(0) \approx 0.7319$.
    """

    gamma: Float[Array, "*hyper"]
    lens: Float[Array, "*hyper"]
    scale: Float[Array, "*hyper"]
    height: Float[Array, "*hyper"]

    def __init__(self, gamma=0.5, lens=0.3, scale=6.0, height=0.15):
        self.gamma = _float(gamma, "gamma", type(self).__name__, strict=False)
        self.lens = _float(lens, "lens", "MultiGaussian")
        self.scale = _float(scale, "scale", "MultiGaussian")
        self.height = _float(height, "height", "MultiGaussian", strict=False)

    def derivative(self, x):
        wide = self.scale * self.lens
        centre = (1 + self.height) * _normal_pdf(x, 0.0, self.lens)
        sides = _normal_pdf(x, self.lens, wide) + _normal_pdf(x, -self.lens, wide)
        return self.gamma * (centre - self.height * sides)


class StraightThrough(AbstractSurrogate):
    r"""Straight-through estimator (Bengio et al. 2013): $\sigma'(x) = 1$."""

    def derivative(self, x):
        return jnp.ones_like(x, dtype=jnp.result_type(x, float))


class Exponential(AbstractSurrogate):
    r"""Two-sided exponential (SLAYER-like): $\sigma'(x) = \frac{k}{2} e^{-k|x|}$. Integral 1.

    **Arguments:** `slope` $k$ (default 5).
    """

    slope: Float[Array, "*hyper"]

    def __init__(self, slope: float | Float[ArrayLike, "*hyper"] = 5.0):
        self.slope = _float(slope, "slope", type(self).__name__)

    def derivative(self, x):
        return self.slope / 2 * jnp.exp(-self.slope * jnp.abs(x))


class CustomSurrogate(AbstractSurrogate):
    r"""Any derivative you write: $\sigma'(x) =$ `derivative_fn(x)`.

    `derivative_fn` must be a JAX-traceable elementwise function; it is differentiated
    normally for second derivatives.
    """

    derivative_fn: Callable[[Array], Array]

    def __init__(self, derivative_fn: Callable[[Array], Array]):
        if not callable(derivative_fn):
            raise TypeError(
                f"CustomSurrogate: `derivative_fn` must be callable, got {type(derivative_fn)!r}."
            )
        self.derivative_fn = derivative_fn

    def derivative(self, x):
        return self.derivative_fn(x)
