"""Learnable synaptic delays through a Gaussian interpolation kernel (DCLS-delays)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._delay import AbstractDelay
from ._neurons._base import as_float


class DCLSDelay(AbstractDelay):
    r"""A dense synaptic layer with one learnable delay per synapse, applied through a
    smooth interpolation kernel (Hammouamri, Khalfaoui-Hassani & Masquelier 2023,
    "Learning delays in spiking neural networks using dilated convolutions with learnable
    spacings").

    Synapse $i \to j$ has a weight $W_{ji}$ and a real delay position $P_{ji}$ in the
    window $[0, D]$ of $K = D + 1$ integer taps. Its kernel is a normalised Gaussian
    over the taps, of width $\sigma$:

    $$\kappa_{jik} = \frac{\exp\!\big(-(k - \bar P_{ji})^2 / 2\sigma^2\big)}
        {\sum_{k'=0}^{D}\exp\!\big(-(k' - \bar P_{ji})^2 / 2\sigma^2\big)}, \qquad
      y_{j,t} = b_j + \sum_i W_{ji} \sum_{k=0}^{D} \kappa_{jik}\, x_{i,t-k},$$

    with $\bar P = \mathrm{clip}(P, 0, D)$ and $x_{t-k} = 0$ before the first step; the
    last $K$ inputs are carried in a ring buffer ([`eqslax.DelayState`][]). The output is
    smooth in $P$, so the delays learn by gradient descent with the weights. As
    $\sigma \to 0$ at integer positions the kernel becomes one-hot and the layer is fixed
    integer delays $y_{j,t} = b_j + \sum_i W_{ji} x_{i,t-P_{ji}}$; once
    $e^{-1/2\sigma^2}$ underflows ($\sigma \le 0.03$ in float64, $0.08$ in float32) the
    equality is exact. `rounded()` gives that layer.

    $\sigma$ is a leaf that is never trained (it is always in `frozen`); the paper anneals
    it from wide to narrow during training, which `anneal_delays` and `delay_sigma` do
    (see there for the schedule). Memory $O(K n_{in})$ per sample, compute
    $O(K n_{in} n_{out})$ per step.
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    position: Float[Array, "out in"]
    sigma: Float[Array, ""]
    window: int = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        *,
        sigma: float | None = None,
        use_bias: bool = True,
        train_position: bool = True,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `in_features`, `out_features`: $n_{in}$, $n_{out}$.
        - `max_delay`: $D \\ge 0$ steps; the window has $D + 1$ taps.
        - `sigma`: the kernel width $\\sigma > 0$ (default $D/2$, at least 0.5: the start
          of the annealing schedule).
        - `use_bias`: add $b$.
        - `train_position`: learn the positions (default); `False` keeps them fixed.
        - `key`: PRNG key. Weights and bias are drawn as `eqx.nn.Linear` draws them,
          positions uniformly in $[0, D]$.
        """
        owner = type(self).__name__
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: `{name}` must be a positive int, got {value!r}.")
        if isinstance(max_delay, bool) or not isinstance(max_delay, int) or max_delay < 0:
            raise ValueError(f"{owner}: `max_delay` must be an int >= 0, got {max_delay!r}.")
        wkey, pkey = jax.random.split(key)
        linear = eqx.nn.Linear(in_features, out_features, use_bias=use_bias, key=wkey)
        self.weight, self.bias = linear.weight, linear.bias
        shape = (out_features, in_features)
        self.position = jax.random.uniform(pkey, shape, self.weight.dtype, 0.0, max_delay)
        sigma = max(max_delay / 2, 0.5) if sigma is None else sigma
        self.sigma = as_float(sigma, "sigma", owner, low=0.0, strict=True)
        self.window = max_delay + 1
        self.frozen = ("sigma",) if train_position else ("position", "sigma")

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)

    @property
    def max_delay(self) -> int:
        """$D$, the largest delay in steps."""
        return self.window - 1

    def state_dtype(self):
        return self.weight.dtype

    def kernel(self) -> Float[Array, "out in taps"]:  # noqa: F821 (axis names)
        r"""$\kappa_{jik}$: the normalised Gaussian of each synapse over the taps."""
        position = jnp.clip(self.param("position"), 0.0, self.max_delay)
        taps = jnp.arange(self.window, dtype=position.dtype)
        sigma = self.param("sigma")
        logits = -0.5 * ((taps - position[..., None]) / sigma) ** 2
        return jax.nn.softmax(logits, axis=-1)

    def read(self, buffer, position):
        recent = buffer[self.slots(position, jnp.arange(self.window))]  # x_(t-k), (K, in)
        delayed = jnp.einsum("jik,ki->ji", self.kernel(), recent)
        y = jnp.sum(self.weight * delayed, axis=-1)
        return y if self.bias is None else y + self.bias

    def rounded(self, sigma: float = 1e-2) -> "DCLSDelay":
        """This layer with its positions rounded to whole steps (clipped to the window)
        and width `sigma` (default 0.01, whose kernel is exactly one-hot): fixed integer
        delays, as the paper uses after training."""
        position = jnp.round(jnp.clip(self.position, 0.0, self.max_delay))
        sigma = jnp.asarray(sigma, self.sigma.dtype)
        return eqx.tree_at(lambda m: (m.position, m.sigma), self, (position, sigma))


def delay_sigma(
    epoch: int, epochs: int, initial: float, final: float = 0.5, fraction: float = 0.25
) -> float:
    r"""The kernel width at `epoch` (counted from 0) of `epochs`: exponential annealing
    from `initial` to `final` over the first `fraction` of training, then constant,

    $$\sigma_e = \sigma_0 \Big(\frac{\sigma_{end}}{\sigma_0}\Big)^{\min(e / (f E),\, 1)}.$$

    Hammouamri et al. (2023) start $\sigma$ at half the window and shrink it during
    training so that the kernel turns from a wide blur, through which every position gets
    a gradient, into a sharp delay; this is that schedule in closed form. Use
    `initial = max_delay / 2` (the `DCLSDelay` default)."""
    if not (initial > 0 and final > 0):
        raise ValueError(
            f"delay_sigma: `initial` and `final` must be > 0, got {initial!r}, {final!r}."
        )
    if not 0 < fraction <= 1:
        raise ValueError(f"delay_sigma: `fraction` must be in (0, 1], got {fraction!r}.")
    if epochs < 1:
        raise ValueError(f"delay_sigma: `epochs` must be >= 1, got {epochs!r}.")
    progress = min(epoch / max(fraction * epochs, 1e-12), 1.0)
    return float(initial * (final / initial) ** progress)


def _is_dcls(node) -> bool:
    return isinstance(node, DCLSDelay)


def anneal_delays(model: PyTree, sigma: float | Float[Array, ""]) -> PyTree:
    """`model` with the kernel width of every `DCLSDelay` in it set to `sigma` (a value
    leaf: a jitted training step is not traced again)."""

    def set_sigma(node):
        if _is_dcls(node):
            return eqx.tree_at(lambda m: m.sigma, node, jnp.asarray(sigma, node.sigma.dtype))
        return node

    return jtu.tree_map(set_sigma, model, is_leaf=_is_dcls)


def round_delays(model: PyTree, sigma: float = 1e-2) -> PyTree:
    """`model` with every `DCLSDelay` replaced by its `rounded(sigma)` form (integer
    delays)."""
    return jtu.tree_map(lambda n: n.rounded(sigma) if _is_dcls(n) else n, model, is_leaf=_is_dcls)
