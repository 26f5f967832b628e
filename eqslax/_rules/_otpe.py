"""Online training with postsynaptic estimates (Summe, Schaefer & Joshi 2023): OTPE and
its low-memory factorisation, Approximate OTPE."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._layers import Layers
from ._layerwise import factored_gradient
from ._layerwise_rule import AbstractLayerwiseRule
from ._ostl import (
    LayerEligibility,
    LayerSensitivity,
    advance_eligibility,
    init_eligibility,
    sensitivity_gradient,
)
from ._ottt import (
    PresynapticTrace,
    advance_presynaptic,
    check_leak,
    check_single_state,
    init_presynaptic,
    neuron_leak,
    own_leak,
    rows,
)

# Leaks ---------------------------------------------------------------------------------


def postsynaptic_leak(layers: Layers, index: int, override, owner: str, dtype) -> Array:
    r"""The leak $\lambda_{l+1}$ of the population that receives layer `index`'s output.

    A hidden layer's estimate $\hat R^l$ has one row per unit of layer $l$, so it takes
    one leak for the next layer: the mean of its per-neuron leaks (exact only when they
    are equal). The last layer's receiver is the `LI` readout, whose leaks line up with
    its rows, or nothing (the loss reads $y^L_t$ directly: leak 0). `override` replaces
    every leak except that of a last layer without a readout.
    """
    receiver = layers.receiver(index)
    if receiver is None:
        return jnp.zeros((), dtype)
    position, neuron = receiver
    leak = neuron_leak(neuron, override, owner, position, dtype)
    return jnp.mean(leak) if index + 1 < len(layers) else leak


# Shared traces -------------------------------------------------------------------------


class DerivativeAverage(eqx.Module):
    r"""The normalised leaky average $\bar g$ `(n,)` of a layer's
    $\partial y/\partial I$ and its normaliser $\rho$ (`()` or `(n,)`)."""

    mean: Float[Array, " n"]
    norm: Float[Array, "*post"]


def advance_average(average: DerivativeAverage, leak: Array, derivative: Array):
    r"""$q = \lambda\rho_{t-1}$, $\rho_t = q + 1$, $w = q/\rho_t$,
    $\bar g_t = w\,\bar g_{t-1} + (1 - w)\,\sigma'_t$, i.e.
    $\bar g_t = \sum_\tau \lambda^{t-\tau}\sigma'_\tau / \sum_\tau \lambda^{t-\tau}$."""
    q = leak * average.norm
    norm = q + 1.0
    weight = q / norm
    return DerivativeAverage(weight * average.mean + (1.0 - weight) * derivative, norm)


def init_average(n: int, leak: Array, dtype) -> DerivativeAverage:
    return DerivativeAverage(jnp.zeros((n,), dtype), jnp.zeros(leak.shape, dtype))


# OTPE ----------------------------------------------------------------------------------


def init_sensitivity(trace: LayerEligibility) -> LayerSensitivity:
    """A zero [`eqslax.layerwise.LayerSensitivity`][] for the parameters `trace` covers."""
    zeros = lambda e: None if e is None else jnp.zeros(e.shape[1:], e.dtype)  # noqa: E731
    return LayerSensitivity(
        weight=zeros(trace.weight),
        bias=zeros(trace.bias),
        neuron=tuple(zeros(e) for e in trace.neuron),
        recurrent=zeros(trace.recurrent),
    )


class OTPELayerTraces(eqx.Module):
    """One layer's OSTL `eligibility`, postsynaptic `estimate` and `average`."""

    eligibility: LayerEligibility
    estimate: LayerSensitivity
    average: DerivativeAverage


class OTPETraces(eqx.Module):
    """OTPE's traces: eligibility, postsynaptic estimate and averaged derivative per layer."""

    layers: tuple[OTPELayerTraces, ...]


class OTPE(AbstractLayerwiseRule):
    r"""OTPE (Summe, Schaefer & Joshi 2023, "Estimating Post-Synaptic Effects for Online
    Training of Feed-Forward SNNs"): OSTL's exact per-layer eligibility, filtered by
    the leak of the layer it feeds.

    Layer $l$'s earlier outputs keep acting on the membrane of layer $l+1$,
    which OSTL and OTTT drop. If that membrane decays by $\lambda_{l+1}$ alone
    (its reset detached or absent), $dv^{l+1}_t/d\theta^l = W^{l+1}\hat R^l_t$
    with the postsynaptic estimate

    $$
    \hat R^l_t = \lambda_{l+1}\hat R^l_{t-1} + \frac{dy^l_t}{d\theta^l}, \qquad
    \frac{dy^l_t}{d\theta^l} = \frac{\partial y^l_t}{\partial h^l_{t-1}} E^l_{t-1}
    + \frac{\partial y^l_t}{\partial\theta^l},
    $$

    where $E^l$ is OSTL's eligibility $E_t = J_t E_{t-1} + \partial h_t /
    \partial\theta$. The gradient and the signal passed down are

    $$
    \nabla_{\theta^l}\ell_t \approx g^l_t \odot \hat R^l_t, \qquad
    g^{l-1}_t = W^{l\top}(g^l_t \odot \bar g^l_t), \qquad
    \bar g^l_t = \frac{\sum_\tau \lambda_{l+1}^{t-\tau}\sigma'^l_\tau}
    {\sum_\tau \lambda_{l+1}^{t-\tau}},
    $$

    $\sigma'^l = \partial y^l/\partial I^l$: the instantaneous derivative is replaced
    by its leaky average, the paper's estimate of how the layer's recent activity
    responds to its input. $g^L_t = \partial \ell_t / \partial y^L_t$.

    The last layer feeds the loss directly (leak 0): it reduces to OSTL, the paper's
    output layer. If the model ends with a frozen `LI` readout
    $o_t = \kappa o_{t-1} + s^L_t$ on which the loss is taken (F-OTPE), the last
    layer's estimate uses $\kappa$ and is exact,
    $do_t/d\theta^L = \hat R^L_t$. Two layers (OTPE hidden, OSTL output) give
    BPTT's gradient exactly when the output reset is detached.

    Memory $O(k\,n_{in} n + n_{in} n)$ per layer and sample.

    A convolutional layer runs per output position on its unfolded patch, as in
    [`eqslax.OSTL`][]; the gradient of the shared weight is summed over positions and the
    signal passed down goes through the transpose of the unfolding.

    On a recurrent layer (`eqslax.Recurrent(neuron)`) $E^l$ and $dy^l_t/d\theta^l$ are
    OSTL's D-RTRL ones (with $W_{rec}$ among the parameters); `leak=0` is then OSTL too.

    A hidden layer's $\hat R^l$ has one row per unit of layer $l$, so it takes
    one leak for layer $l+1$: the mean of that layer's per-neuron leaks (exact only
    when they are equal). The readout's leaks line up with the last layer's rows and are
    used per unit.

    **Arguments:** `leak`: $\lambda_{l+1}$ for every estimate (not for a last layer
    without a readout, whose leak is 0); `None` (default) reads the `decay` of the
    receiving population. `leak=0` gives OSTL.
    """

    traces_type: ClassVar[type] = OTPETraces

    leak: float | None = None

    def __check_init__(self):
        check_leak(self.leak, "OTPE")

    def view(self, model) -> Layers:
        return Layers(model, "OTPE", readout=True)

    def init_layer(self, layers, index, state, dtype):
        leak = postsynaptic_leak(layers, index, self.leak, "OTPE", dtype)
        eligibility = init_eligibility(layers[index], state, dtype)
        return OTPELayerTraces(
            eligibility=eligibility,
            estimate=init_sensitivity(eligibility),
            average=init_average(layers[index].size, leak, dtype),
        )

    def advance(self, layers, index, trace, step):
        leak = postsynaptic_leak(layers, index, self.leak, "OTPE", trace.average.mean.dtype)
        eligibility, now = advance_eligibility(layers[index], trace.eligibility, step)
        old = trace.estimate
        estimate = LayerSensitivity(
            weight=rows(leak) * old.weight + now.weight,
            bias=None if now.bias is None else leak * old.bias + now.bias,
            neuron=tuple(leak * r + d for r, d in zip(old.neuron, now.neuron)),
            recurrent=None if now.recurrent is None else rows(leak) * old.recurrent + now.recurrent,
        )
        average = advance_average(trace.average, leak, step.local.y_input)
        return OTPELayerTraces(eligibility, estimate, average), estimate

    def gradient(self, layers, index, estimate, step, signal):
        return sensitivity_gradient(layers[index], estimate, signal)

    def passback(self, layers, index, trace, step, signal):
        return layers[index].affine.weight.T @ (signal * trace.average.mean)


# Approximate OTPE ----------------------------------------------------------------------


class ApproxOTPELayerTraces(eqx.Module):
    r"""One layer's first-order traces ($\hat a$, $\hat r$, neuron
    eligibilities, as OTTT), second-order traces in the same layout ($\hat z$,
    $\hat z_b$ and the per-unit estimates $\hat R^\nu$ of neuron parameters)
    and the derivative `average`."""

    presynaptic: PresynapticTrace
    second: PresynapticTrace
    average: DerivativeAverage


class ApproxOTPETraces(eqx.Module):
    """Approximate OTPE's traces: two-level presynaptic traces per layer."""

    layers: tuple[ApproxOTPELayerTraces, ...]


class ApproxOTPE(AbstractLayerwiseRule):
    r"""Approximate OTPE (Summe, Schaefer & Joshi 2023): OTPE's estimate factorised as
    $\hat R^l \approx \bar g^l \otimes \hat z^l$, at OTTT's memory cost.

    With $\lambda_l$ the layer's own leak (that of the neurons receiving
    $x^l$) and $\lambda_{l+1}$ the leak of the population it feeds:

    $$
    \hat a^l_t = \lambda_l \hat a^l_{t-1} + x^l_t, \qquad
    \hat z^l_t = \lambda_{l+1} \hat z^l_{t-1} + \hat a^l_t,
    $$

    $$
    \nabla_{W^l}\ell_t \approx (g^l_t \odot \bar g^l_t) \otimes \hat z^l_t, \qquad
    g^{l-1}_t = W^{l\top}(g^l_t \odot \bar g^l_t),
    $$

    with $\bar g^l$ as in `OTPE`. The bias is a weight on a constant input
    1 ($\hat r_t = \lambda_l \hat r_{t-1} + 1$, $\hat z_{b,t} = \lambda_{l+1}
    \hat z_{b,t-1} + \hat r_t$); `bias_trace=False` gives it the untraced
    $g \odot \bar g$ of the reference code. Neuron parameters are per unit, so
    their estimate is kept whole: OTTT's $dy/d\nu$ filtered by
    $\lambda_{l+1}$. The last layer without a readout reduces to OTTT (the paper's
    output layer); an `LI` readout makes it the approximate front variant.

    Equal to OTPE, and to BPTT for two layers, when the surrogate derivative is constant
    and every reset is detached. Memory $O(2 n_{in} + n)$ per layer and sample
    ($O(2 n_{in} n)$ with per-neuron leaks).

    A convolutional layer is traced per output position on its unfolded patch, as in
    [`eqslax.OTTT`][].

    A recurrent layer's $W_{rec}$ gets the same two-level traces with $y_{t-1}$ as its
    presynaptic input, as in [`eqslax.OTTT`][]; `leak=0` is then OTTT too.

    **Arguments:**

    - `leak`: $\lambda_{l+1}$ for $\hat z$ and $\bar g$; `None`
      (default) reads the receiving population's `decay` as in `OTPE`.
      `leak=0` gives OTTT.
    - `presynaptic_leak`: $\lambda_l$ for $\hat a$; `None` (default)
      reads the layer's own `decay`.
    - `bias_trace`: trace the bias (default `True`).
    """

    sum_batch_each_step: ClassVar[bool] = True
    traces_type: ClassVar[type] = ApproxOTPETraces

    leak: float | None = None
    presynaptic_leak: float | None = None
    bias_trace: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_leak(self.leak, "ApproxOTPE")
        check_leak(self.presynaptic_leak, "ApproxOTPE", "presynaptic_leak")

    def view(self, model) -> Layers:
        return Layers(model, "ApproxOTPE", readout=True)

    def _leaks(self, layers, index, dtype):
        own = own_leak(layers, index, self.presynaptic_leak, "ApproxOTPE", dtype)
        return own, postsynaptic_leak(layers, index, self.leak, "ApproxOTPE", dtype)

    def init_layer(self, layers, index, state, dtype):
        layer = layers[index]
        own, post = self._leaks(layers, index, dtype)
        check_single_state(layer.neuron, state, "ApproxOTPE", layers.name(index))
        both = jnp.zeros(jnp.broadcast_shapes(own.shape, post.shape), dtype)
        return ApproxOTPELayerTraces(
            presynaptic=init_presynaptic(layer, own, dtype),
            second=init_presynaptic(layer, both, dtype),
            average=init_average(layer.size, post, dtype),
        )

    def advance(self, layers, index, trace, step):
        own, post = self._leaks(layers, index, trace.average.mean.dtype)
        first, now = advance_presynaptic(trace.presynaptic, own, step)
        old = trace.second
        second = PresynapticTrace(
            input=rows(post) * old.input + first.input,
            bias=None if old.bias is None else post * old.bias + first.bias,
            neuron=tuple(post * r + d for r, d in zip(old.neuron, now)),
            recurrent=None
            if old.recurrent is None
            else rows(post) * old.recurrent + first.recurrent,
        )
        average = advance_average(trace.average, post, step.local.y_input)
        new = ApproxOTPELayerTraces(first, second, average)
        return new, new

    def gradient(self, layers, index, estimate, step, signal):
        second = estimate.second
        return factored_gradient(
            layers[index],
            signal * estimate.average.mean,
            second.input,
            second.bias if self.bias_trace else None,
            [signal * r for r in second.neuron],
            second.recurrent,
        )

    def passback(self, layers, index, trace, step, signal):
        return layers[index].affine.weight.T @ (signal * trace.average.mean)
