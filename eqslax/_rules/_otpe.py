"""Online training with postsynaptic estimates (Summe, Schaefer & Joshi 2023): OTPE and
its low-memory factorisation, Approximate OTPE."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._connect import Connect
from .._neurons import LI
from .._parameters import trainable
from ._layerwise import (
    check_layers,
    factored_gradient,
    float_dtype,
    neuron_step,
    set_layer_grads,
)
from ._online import AbstractOnlineRule
from ._ostl import (
    LayerEligibility,
    LayerSensitivity,
    advance_eligibility,
    forward_layers,
    init_eligibility,
    output_sensitivity,
)
from ._ottt import (
    PresynapticTrace,
    advance_presynaptic,
    check_leak,
    check_single_state,
    init_presynaptic,
    neuron_leak,
    rows,
)

# Layers and leaks ----------------------------------------------------------------------


def split_readout(model, owner: str):
    """`(pairs, readout)`: the (Linear, neuron) pairs and an optional trailing `LI`
    readout $o_t = \\kappa o_{t-1} + s^L_t$ (the "front" form, F-OTPE)."""
    layers = model.layers if isinstance(model, Connect) else ()
    if len(layers) % 2 == 1 and len(layers) > 1 and isinstance(layers[-1], LI):
        readout = layers[-1]
        if jtu.tree_leaves(trainable(readout)):
            raise ValueError(
                f"{owner}: layer {len(layers) - 1} (LI readout) has a trainable decay; the "
                f"postsynaptic estimate needs a constant readout leak. Build it with "
                f"train_decay=False."
            )
        trimmed = eqx.tree_at(lambda m: m.layers, model, layers[:-1])
        return check_layers(trimmed, owner), readout
    return check_layers(model, owner), None


def postsynaptic_leaks(pairs, readout, override, owner: str, dtype) -> list[Array]:
    r"""The leak $\lambda_{l+1}$ of the population that receives each layer's output.

    A hidden layer's estimate $\hat R^l$ has one row per unit of layer $l$, so
    it takes one leak for the next layer: the mean of its per-neuron leaks (exact only
    when they are equal). The last layer's receiver is the `LI` readout, whose leaks
    line up with its rows, or nothing (the loss reads $y^L_t$ directly: leak 0).
    `override` replaces every leak except that of a last layer without a readout.
    """
    leaks = []
    for index in range(len(pairs)):
        if index + 1 < len(pairs):
            leak = jnp.mean(neuron_leak(pairs[index + 1][1], override, owner, 2 * index + 3, dtype))
        elif readout is not None:
            leak = neuron_leak(readout, override, owner, 2 * index + 2, dtype)
        else:
            leak = jnp.zeros((), dtype)
        leaks.append(leak)
    return leaks


def forward_readout(model, pairs, readout, state, x):
    """`forward_layers`, then the readout if any; also returns the factor
    $\\partial o_t/\\partial y^L_t$ that carries the loss's signal into the last layer."""
    state, y, inputs, locals_ = forward_layers(pairs, state, x)
    if readout is None:
        return state, y, inputs, locals_, 1.0
    readout_state, output, local = neuron_step(readout, state.layers[-1], y)
    state = eqx.tree_at(lambda s: s.layers, state, (*state.layers[:-1], readout_state))
    return state, output, inputs, locals_, local.y_input


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


def init_sensitivity(linear, trace: LayerEligibility) -> LayerSensitivity:
    return LayerSensitivity(
        weight=jnp.zeros(trace.weight.shape[1:], trace.weight.dtype),
        bias=None if trace.bias is None else jnp.zeros(trace.bias.shape[1:], trace.bias.dtype),
        neuron=tuple(jnp.zeros(e.shape[1:], e.dtype) for e in trace.neuron),
    )


class OTPELayerTraces(eqx.Module):
    """One layer's OSTL `eligibility`, postsynaptic `estimate` and `average`."""

    eligibility: LayerEligibility
    estimate: LayerSensitivity
    average: DerivativeAverage


class OTPETraces(eqx.Module):
    """OTPE's traces: eligibility, postsynaptic estimate and averaged derivative per layer."""

    layers: tuple[OTPELayerTraces, ...]


class OTPE(AbstractOnlineRule):
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

    A hidden layer's $\hat R^l$ has one row per unit of layer $l$, so it takes
    one leak for layer $l+1$: the mean of that layer's per-neuron leaks (exact only
    when they are equal). The readout's leaks line up with the last layer's rows and are
    used per unit.

    **Arguments:** `leak`: $\lambda_{l+1}$ for every estimate (not for a last layer
    without a readout, whose leak is 0); `None` (default) reads the `decay` of the
    receiving population. `leak=0` gives OSTL.
    """

    leak: float | None = None

    def __check_init__(self):
        check_leak(self.leak, "OTPE")

    def init_traces(self, model, state):
        pairs, readout = split_readout(model, "OTPE")
        dtype = float_dtype(state)
        leaks = postsynaptic_leaks(pairs, readout, self.leak, "OTPE", dtype)
        traces = []
        for (linear, _), eligibility, leak in zip(
            pairs, init_eligibility(pairs, state, dtype), leaks
        ):
            traces.append(
                OTPELayerTraces(
                    eligibility=eligibility,
                    estimate=init_sensitivity(linear, eligibility),
                    average=init_average(linear.out_features, leak, dtype),
                )
            )
        return OTPETraces(tuple(traces))

    def step(self, model, state, traces, x, label, loss):
        pairs, readout = split_readout(model, "OTPE")
        dtype = traces.layers[0].average.mean.dtype
        leaks = postsynaptic_leaks(pairs, readout, self.leak, "OTPE", dtype)
        state, y, inputs, locals_, factor = forward_readout(model, pairs, readout, state, x)
        value, signal = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        signal = signal * factor
        grads = jtu.tree_map(jnp.zeros_like, trainable(model))
        new_traces = list(traces.layers)
        for index in reversed(range(len(pairs))):
            linear, neuron = pairs[index]
            trace, local, x_in = traces.layers[index], locals_[index], inputs[index]
            leak = leaks[index]
            now = output_sensitivity(trace.eligibility, local, x_in)
            estimate = LayerSensitivity(
                weight=rows(leak) * trace.estimate.weight + now.weight,
                bias=None if now.bias is None else leak * trace.estimate.bias + now.bias,
                neuron=tuple(leak * r + d for r, d in zip(trace.estimate.neuron, now.neuron)),
            )
            average = advance_average(trace.average, leak, local.y_input)
            linear_grad, neuron_grad = factored_gradient(
                linear,
                neuron,
                signal,
                estimate.weight,
                estimate.bias,
                [signal * r for r in estimate.neuron],
            )
            grads = set_layer_grads(grads, index, linear_grad, neuron_grad)
            new_traces[index] = OTPELayerTraces(
                eligibility=advance_eligibility(trace.eligibility, local, x_in),
                estimate=estimate,
                average=average,
            )
            signal = linear.weight.T @ (signal * average.mean)
        return state, OTPETraces(tuple(new_traces)), grads, y, value


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


class ApproxOTPE(AbstractOnlineRule):
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

    **Arguments:**

    - `leak`: $\lambda_{l+1}$ for $\hat z$ and $\bar g$; `None`
      (default) reads the receiving population's `decay` as in `OTPE`.
      `leak=0` gives OTTT.
    - `presynaptic_leak`: $\lambda_l$ for $\hat a$; `None` (default)
      reads the layer's own `decay`.
    - `bias_trace`: trace the bias (default `True`).
    """

    sum_batch_each_step: ClassVar[bool] = True

    leak: float | None = None
    presynaptic_leak: float | None = None
    bias_trace: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_leak(self.leak, "ApproxOTPE")
        check_leak(self.presynaptic_leak, "ApproxOTPE", "presynaptic_leak")

    def _leaks(self, pairs, readout, dtype):
        own = [
            neuron_leak(neuron, self.presynaptic_leak, "ApproxOTPE", 2 * index + 1, dtype)
            for index, (_, neuron) in enumerate(pairs)
        ]
        return own, postsynaptic_leaks(pairs, readout, self.leak, "ApproxOTPE", dtype)

    def init_traces(self, model, state):
        pairs, readout = split_readout(model, "ApproxOTPE")
        dtype = float_dtype(state)
        traces = []
        for index, ((linear, neuron), own, post) in enumerate(
            zip(pairs, *self._leaks(pairs, readout, dtype))
        ):
            check_single_state(neuron, state.layers[2 * index + 1], "ApproxOTPE", 2 * index + 1)
            both = jnp.zeros(jnp.broadcast_shapes(own.shape, post.shape), dtype)
            traces.append(
                ApproxOTPELayerTraces(
                    presynaptic=init_presynaptic(linear, neuron, own, dtype),
                    second=init_presynaptic(linear, neuron, both, dtype),
                    average=init_average(linear.out_features, post, dtype),
                )
            )
        return ApproxOTPETraces(tuple(traces))

    def step(self, model, state, traces, x, label, loss):
        pairs, readout = split_readout(model, "ApproxOTPE")
        own_leaks, post_leaks = self._leaks(pairs, readout, traces.layers[0].average.mean.dtype)
        state, y, inputs, locals_, factor = forward_readout(model, pairs, readout, state, x)
        value, signal = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        signal = signal * factor
        grads = jtu.tree_map(jnp.zeros_like, trainable(model))
        new_traces = list(traces.layers)
        for index in reversed(range(len(pairs))):
            linear, neuron = pairs[index]
            trace, local, post = traces.layers[index], locals_[index], post_leaks[index]
            first, now = advance_presynaptic(
                trace.presynaptic, own_leaks[index], local, inputs[index]
            )
            old = trace.second
            second = PresynapticTrace(
                input=rows(post) * old.input + first.input,
                bias=None if old.bias is None else post * old.bias + first.bias,
                neuron=tuple(post * r + d for r, d in zip(old.neuron, now)),
            )
            average = advance_average(trace.average, post, local.y_input)
            factor = signal * average.mean
            linear_grad, neuron_grad = factored_gradient(
                linear,
                neuron,
                factor,
                second.input,
                second.bias if self.bias_trace else None,
                [signal * r for r in second.neuron],
            )
            grads = set_layer_grads(grads, index, linear_grad, neuron_grad)
            new_traces[index] = ApproxOTPELayerTraces(first, second, average)
            signal = linear.weight.T @ factor
        return state, ApproxOTPETraces(tuple(new_traces)), grads, y, value
