"""Online training through time (Xiao et al. 2022): presynaptic traces, spatial signal."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._layers import Layer, Layers
from ._layerwise import factored_gradient, neuron_params, state_size
from ._layerwise_rule import AbstractLayerwiseRule


def check_leak(leak, owner: str, name: str = "leak") -> None:
    """A leak override is `None` or a number in [0, 1]."""
    if leak is None:
        return
    if isinstance(leak, bool) or not isinstance(leak, (int, float)):
        raise TypeError(f"{owner}: `{name}` must be None or a float in [0, 1], got {leak!r}.")
    if not 0.0 <= leak <= 1.0:
        raise ValueError(f"{owner}: `{name}` must lie in [0, 1], got {leak!r}.")


def neuron_leak(neuron, override, owner: str, layer: int, dtype) -> Array:
    r"""The leak $\lambda$ of a population: `override` if given, else its own
    `decay` (clipped to [0, 1] as the neurons read it, and held constant). Shape `()`
    for a shared leak, `(n,)` for one leak per neuron."""
    if override is not None:
        return jnp.asarray(override, dtype)
    decay = getattr(neuron, "decay", None)
    if decay is None:
        raise ValueError(
            f"{owner}: layer {layer} ({type(neuron).__name__}) has no `decay` to take the "
            f"trace leak from; pass `leak=` explicitly (e.g. leak=1.0 for IF)."
        )
    leak = jax.lax.stop_gradient(jnp.clip(jnp.asarray(decay, dtype), 0.0, 1.0))
    return leak.reshape(()) if leak.size == 1 else leak


def rows(leak: Array) -> Array:
    """A leak of shape `()` or `(n,)` as a factor on `(..., n_in)` traces."""
    return leak[..., None]


class PresynapticTrace(eqx.Module):
    r"""Traces of one layer under OTTT's assumption $\partial h_t/\partial h_{t-1}
    = \lambda$: the presynaptic trace $\hat a$ `(n_in,)` for a shared leak or
    `(n, n_in)` for per-neuron leaks, the bias trace $\hat r$ (`()` or `(n,)`), one
    per-unit membrane eligibility `(n,)` per trainable neuron parameter and, for a
    recurrent layer, the trace $\hat a_{rec}$ of $y_{t-1}$ (`(n,)` or `(n, n)`)."""

    input: Float[Array, "*post n_in"]
    bias: Float[Array, "*post"] | None
    neuron: tuple[Array, ...]
    recurrent: Float[Array, "*post n"] | None = None


def init_presynaptic(layer: Layer, leak: Array, dtype) -> PresynapticTrace:
    """Zero presynaptic traces of `layer` for a leak of shape `()` or `(n,)`."""
    leaves, _, _ = neuron_params(layer.neuron)
    n = layer.size
    return PresynapticTrace(
        input=jnp.zeros((*leak.shape, layer.in_size), dtype),
        bias=None if layer.affine.bias is None else jnp.zeros(leak.shape, dtype),
        neuron=tuple(jnp.zeros((n,), dtype) for _ in leaves),
        recurrent=None if layer.recurrent is None else jnp.zeros((*leak.shape, n), dtype),
    )


def check_single_state(neuron, state, owner: str, name: str) -> None:
    """Neuron parameters get traces only when the membrane is the one state variable."""
    leaves, _, _ = neuron_params(neuron)
    k = state_size(state)
    if leaves and k != 1:
        raise ValueError(
            f"{owner}: {name} has trainable parameters and {k} state variables; "
            f"presynaptic traces assume a single leaky membrane. Freeze its parameters "
            f"or use OSTL."
        )


def advance_presynaptic(trace: PresynapticTrace, leak: Array, step):
    r"""Advance the traces to step $t$ and estimate $dy_t/d\nu$ for every neuron
    parameter $\nu$:

    $$\hat a_t = \lambda \hat a_{t-1} + x_t, \qquad
      \hat a_{rec,t} = \lambda \hat a_{rec,t-1} + y_{t-1}, \qquad
      \hat r_t = \lambda \hat r_{t-1} + 1, \qquad
      e^\nu_t = \lambda e^\nu_{t-1} + \partial h_t/\partial\nu,$$

    $$\frac{dy_t}{d\nu} \approx \frac{\partial y_t}{\partial\nu}
        + \lambda \frac{\partial y_t}{\partial I_t}\, e^\nu_{t-1}.$$

    Returns the new trace and the per-unit `(n,)` estimates of $dy_t/d\nu$.
    """
    local = step.local
    neuron_sensitivity = tuple(
        direct + leak * local.y_input * e for direct, e in zip(local.y_param, trace.neuron)
    )
    recurrent = None
    if trace.recurrent is not None:
        recurrent = rows(leak) * trace.recurrent + step.previous
    new = PresynapticTrace(
        input=rows(leak) * trace.input + step.input,
        bias=None if trace.bias is None else leak * trace.bias + 1.0,
        neuron=tuple(leak * e + h[0] for e, h in zip(trace.neuron, local.h_param)),
        recurrent=recurrent,
    )
    return new, neuron_sensitivity


class OTTTTraces(eqx.Module):
    """OTTT's traces: one presynaptic (and bias) trace per layer."""

    layers: tuple[PresynapticTrace, ...]


def own_leak(layers: Layers, index: int, override, owner: str, dtype) -> Array:
    r"""The leak $\lambda_l$ of layer `index`'s own neurons."""
    return neuron_leak(layers[index].neuron, override, owner, layers[index].position, dtype)


class OTTT(AbstractLayerwiseRule):
    r"""OTTT (Xiao et al. 2022, "Online Training Through Time for Spiking Neural
    Networks"): a presynaptic trace per layer and a spatial learning signal.

    For each layer $l$ (an `eqx.nn.Linear` then an elementwise neuron) with leak
    $\lambda_l$ (the leak of the neurons that receive the layer input $x^l$):

    $$
    \hat a^l_t = \lambda_l \hat a^l_{t-1} + x^l_t, \qquad
    \hat r^l_t = \lambda_l \hat r^l_{t-1} + 1,
    $$

    $$
    \nabla_{W^l}\ell_t = (g^l_t \odot \sigma'^l_t) \otimes \hat a^l_t, \qquad
    \nabla_{b^l}\ell_t = (g^l_t \odot \sigma'^l_t)\, \hat r^l_t,
    $$

    with $\sigma'^l_t = \partial y^l_t/\partial I^l_t$ (the surrogate derivative for
    LIF) and $g^l_t = \partial\ell_t/\partial y^l_t$ backpropagated through the layers
    above at the same step, $g^{l-1}_t = W^{l\top}(g^l_t \odot \sigma'^l_t)$. The
    bias is a weight on a constant input 1, so its trace is the same recursion with
    $x \equiv 1$; `bias_trace=False` gives it the untraced
    $g \odot \sigma'$ instead, as the Slax and OTPE reference code do. A trainable
    parameter $\nu$ of a single-state neuron gets a per-unit trace under the same
    assumption, $e^\nu_t = \lambda e^\nu_{t-1} + \partial h_t/\partial\nu$ and
    $dy_t/d\nu \approx \partial y_t/\partial\nu + \lambda\sigma'_t e^\nu_{t-1}$.

    OTTT assumes $\partial h_t/\partial h_{t-1} = \lambda$, i.e. a leaky membrane
    with a detached subtractive reset. It runs on any such network but equals BPTT for a
    single layer, and OSTL in every layer, only with `detach_reset=True` (and
    `reset="subtract"` or `"none"`). The trace is `(n_in,)` per layer and sample
    for a shared leak and `(n, n_in)` for per-neuron leaks. The deferred `grad` and
    `update` are the paper's OTTT_A; with `eqslax.train_online` it is OTTT_O.

    A recurrent layer (`eqslax.Recurrent(neuron)`, input current $W x_t + b + W_{rec}
    y_{t-1}$) gets a second presynaptic trace $\hat a_{rec,t} = \lambda \hat a_{rec,t-1}
    + y_{t-1}$ and $\nabla_{W_{rec}}\ell_t = (g_t \odot \sigma'_t) \otimes \hat a_{rec,t}$:
    the previous output is one more presynaptic input, and its path through the layer's
    own later activity is dropped. With detached resets this equals OSTL when $W_{rec}$
    has a zero diagonal, and BPTT for a single layer when $W_{rec} = 0$.

    A convolutional layer (`eqx.nn.Conv1d`/`Conv2d`, then an elementwise neuron) is
    traced at each output position $p$ on its unfolded input patch: $\hat a_{p,t} =
    \lambda \hat a_{p,t-1} + u_p(x_t) = u_p(\hat a^{map}_t)$ for a shared leak, the
    trace of the input map seen through the patch, and $\nabla_W \ell_t = \sum_p
    (g_{p,t} \odot \sigma'_{p,t}) \otimes \hat a_{p,t}$, the convolution's weight
    gradient (its transpose) applied to the traced map. It equals OTTT on the equivalent
    dense (Toeplitz) layer with the gradient summed over the shared weight, and BPTT for
    one conv layer with the reset detached. Memory $O(\prod K \cdot n_{in})$ per layer
    and sample (one patch per position).

    **Arguments:**

    - `leak`: $\lambda$ for every layer; `None` (default) reads each layer's own
      `decay` (scalar or per neuron). Neurons without `decay` need an explicit leak.
    - `bias_trace`: trace the bias (default `True`).
    """

    sum_batch_each_step: ClassVar[bool] = True
    traces_type: ClassVar[type] = OTTTTraces

    leak: float | None = None
    bias_trace: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_leak(self.leak, "OTTT")

    def init_layer(self, layers, index, state, dtype):
        layer = layers[index]
        leak = own_leak(layers, index, self.leak, "OTTT", dtype)
        check_single_state(layer.neuron, state, "OTTT", layers.name(index))
        return init_presynaptic(layer, leak, dtype)

    def advance(self, layers, index, trace, step):
        leak = own_leak(layers, index, self.leak, "OTTT", trace.input.dtype)
        new, sensitivity = advance_presynaptic(trace, leak, step)
        return new, (new, sensitivity)

    def gradient(self, layers, index, estimate, step, signal):
        trace, sensitivity = estimate
        return factored_gradient(
            layers[index],
            signal * step.local.y_input,
            trace.input,
            trace.bias if self.bias_trace else None,
            [signal * s for s in sensitivity],
            trace.recurrent,
        )
