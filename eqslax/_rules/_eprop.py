"""e-prop (Bellec et al. 2020): eligibility traces times a broadcast learning signal."""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_choice
from .._neurons import LI, AbstractNeuron, AbstractSpikingPopulation
from ._layers import Layers, rebuild
from ._layerwise_rule import AbstractLayerwiseRule
from ._online import check_per_step, deferred_update
from ._ostl import (
    LayerEligibility,
    LayerSensitivity,
    advance_eligibility,
    init_eligibility,
    sensitivity_gradient,
)

FEEDBACK_MODES = ("symmetric", "random", "adaptive")


class EPropState(eqx.Module):
    """What e-prop keeps across batches: the feedback matrix $B$ (`None` for symmetric
    feedback) and, for adaptive feedback, the readout weight $W^{out}$ seen at the last
    update."""

    feedback: Float[Array, "hidden out"] | None
    readout: Float[Array, "out hidden"] | None


class EPropLayerTraces(eqx.Module):
    r"""One hidden layer: eligibility vectors $\epsilon = dh/d\theta$ (`eligibility`, with
    $y_{t-1}$ as the presynaptic input of $W_{rec}$ in a recurrent layer) and the
    readout-filtered eligibility traces $\bar e_t = \kappa\bar e_{t-1} + e_t$
    (`filtered`, one per parameter, per unit)."""

    eligibility: LayerEligibility
    filtered: LayerSensitivity


class EPropReadoutTraces(eqx.Module):
    """The readout layer: its exact eligibility and the feedback matrix $B$ in use
    (`None` for symmetric feedback)."""

    eligibility: LayerEligibility
    feedback: Float[Array, "hidden out"] | None


class EPropTraces(eqx.Module):
    """Per-sample traces: one `EPropLayerTraces` per hidden layer, then the readout's
    `EPropReadoutTraces`."""

    layers: tuple[EPropLayerTraces | EPropReadoutTraces, ...]

    @property
    def hidden(self) -> tuple[EPropLayerTraces, ...]:
        """The hidden layers' traces."""
        return self.layers[:-1]

    @property
    def readout(self) -> LayerEligibility:
        """The readout layer's exact eligibility."""
        return self.layers[-1].eligibility

    @property
    def feedback(self) -> Float[Array, "hidden out"] | None:
        """The feedback matrix $B$ in use (`None` for symmetric feedback)."""
        return self.layers[-1].feedback


def eligibility_neuron(neuron, reset_in_eligibility: bool):
    """The neuron whose per-unit Jacobian defines the eligibility vectors: unless
    `reset_in_eligibility`, a spiking neuron's reset is detached (the paper neglects the
    reset's dependence on the membrane); forward values are unchanged."""
    if isinstance(neuron, AbstractSpikingPopulation) and not reset_in_eligibility:
        return rebuild(type(neuron), neuron, detach_reset=True)
    return neuron


def eprop_layers(model, reset_in_eligibility: bool, owner: str = "EProp") -> Layers:
    """The layer-wise view with eligibility neurons (`RLIF` seen as a recurrent `LIF`);
    the last layer must be the `LI` readout with one scalar decay."""
    layers = Layers(
        model, owner, rlif=True, view=lambda n: eligibility_neuron(n, reset_in_eligibility)
    )
    for layer in layers:
        if layer.kind == "conv":
            raise ValueError(
                f"{owner}: {layers.name(layer.index)} follows a convolution (layer "
                f"{layer.position - 1}, {type(layer.affine).__name__}); e-prop's learning "
                f"signal is broadcast per hidden unit through the readout feedback, which has "
                f"no convolutional form here. Use OSTL, OTTT, OTPE or ApproxOTPE."
            )
    last = len(model.layers) - 1
    readout = model.layers[last]
    if not isinstance(readout, LI):
        raise ValueError(
            f"{owner}: the last layer ({last}, {type(readout).__name__}) must be eqslax.LI, "
            f"the leaky readout y_t = kappa y_(t-1) + W_out z_t + b whose error drives the "
            f"learning signal."
        )
    if readout.decay.size != 1:
        raise ValueError(
            f"{owner}: the readout LI (layer {last}) must have one scalar decay kappa, which "
            f"filters every eligibility trace; got `decay` of shape {readout.decay.shape}."
        )
    return layers


class EProp(AbstractLayerwiseRule):
    r"""e-prop: eligibility traces times a learning signal broadcast from the readout.

    The network is `Connect([Linear, neuron, ..., Linear, LI])`: hidden layers of
    elementwise neurons (`LIF`, `ALIF`, ...) or recurrent layers (`Recurrent(neuron)`,
    or the legacy `RLIF`), then a
    leaky readout $y_t = \kappa y_{t-1} + W^{out} z_t + b^{out}$ (`LI` with one
    scalar decay $\kappa$). For hidden unit $j$ and input $i$:

    - eligibility vector $\epsilon_t = \frac{\partial h_t}{\partial h_{t-1}}
      \epsilon_{t-1} + \frac{\partial h_t}{\partial W}$, with the reset's dependence on
      the membrane neglected by default (reset detached). For LIF,
      $\epsilon_{ji,t} = \lambda\epsilon_{ji,t-1} + x_{i,t}$; for ALIF (threshold
      $\vartheta + \beta a$), $\epsilon^a_{t+1} = \psi_t\epsilon^v_t +
      (\rho - \psi_t\beta)\epsilon^a_t$. In a recurrent layer the recurrent weight's
      presynaptic input is $z_{i,t-1}$, with the same eligibility recursion:
      `Recurrent(ALIF(n))` is the LSNN of Bellec et al. (2020). $z_{t-1}$ is an input
      only; its own dependence on $W$ (through $W_{rec,jj}$ too) is dropped.
    - eligibility trace $e_{ji,t} = dz_{j,t}/dW_{ji}$ (LIF: $\psi_{j,t}
      \epsilon_{ji,t}$; ALIF: $\psi_{j,t}(\epsilon^v_{ji,t} - \beta\epsilon^a_{ji,t})$),
      filtered by the readout leak: $\bar e_t = \kappa\bar e_{t-1} + e_t$.
    - learning signal $L_{j,t} = \sum_k B_{jk}\,\partial\ell_t/\partial y_{k,t}$
      (MSE: $B(y_t - y^*_t)$; cross-entropy: $B(\pi_t - \pi^*_t)$), and
      $\nabla_{W_{ji}}\ell_t \approx L_{j,t}\bar e_{ji,t}$.

    Biases and trainable neuron parameters follow the same recursion per unit. The
    readout's parameters get their exact gradient
    $\partial\ell_t/\partial y_t \otimes \bar z_t$. Below the top hidden layer the
    signal is backpropagated through the layer above at the same step,
    $L^{l-1}_t = W^{l\top}(L^l_t \odot \partial z^l_t/\partial I^l_t)$ (an extension:
    the paper has one recurrent layer).

    Feedback $B$ (`feedback`):

    - `"symmetric"`: $B = W^{out\top}$, the current readout weights.
    - `"random"`: fixed $B_{jk} \sim \mathcal N(0, 1/n_{hidden})$ drawn from
      `key`; `init(model)` returns it as the rule state.
    - `"adaptive"` (Kolen-Pollack style): $B$ starts random and receives every
      change of $W^{out}$ the optimiser makes, measured between updates, with a
      decay of the mismatch, $B \leftarrow B + \Delta W^{out\top} - \mu(B -
      W^{out\top}_{old})$, so $B - W^{out\top}$ shrinks by $1 - \mu$ per
      update. It needs the rule state between updates: use it with `train_offline` or
      `train_online_deferred` (`train_online` raises).

    What it approximates: $dE/dz_{j,t}$ by its direct part, dropping paths through
    later network activity (recurrent weights, layers above). **Exact** (equal to BPTT)
    for one feed-forward hidden layer, or a recurrent one with $W_{rec} = 0$, with
    the leaky readout, symmetric feedback and a per-step loss, when the BPTT model
    detaches the reset (`detach_reset=True`) or the rule keeps it
    (`reset_in_eligibility=True`). Memory per sample and layer: $O(k\,n\,n_{in})$
    eligibility vectors plus $O(n\,n_{in})$ filtered traces. With a memoryless
    readout ($\kappa = 0$) and `reset_in_eligibility=True` it equals OSTL on one
    recurrent layer without self-connections.
    """

    traces_type: ClassVar[type] = EPropTraces

    feedback: str = eqx.field(static=True)
    key: PRNGKeyArray | None
    feedback_decay: float
    reset_in_eligibility: bool = eqx.field(static=True)

    def __init__(
        self,
        feedback: str = "symmetric",
        *,
        key: PRNGKeyArray | None = None,
        feedback_decay: float = 0.0,
        reset_in_eligibility: bool = False,
    ):
        """**Arguments:**

        - `feedback`: `"symmetric"` (default), `"random"` or `"adaptive"`.
        - `key`: PRNG key for the random $B$; required unless symmetric.
        - `feedback_decay`: $\\mu \\in [0, 1]$, the mismatch decay of adaptive
          feedback (default 0: $B - W^{out\\top}$ stays fixed).
        - `reset_in_eligibility`: keep the neuron's reset derivative in the eligibility
          vectors (the full per-unit Jacobian) instead of the paper's reset-free one.
        """
        self.feedback = check_choice(feedback, "feedback", FEEDBACK_MODES, "EProp")
        if feedback != "symmetric" and key is None:
            raise ValueError(
                f"EProp: `key` is required to draw the feedback matrix for "
                f"feedback={feedback!r}; pass key=jax.random.key(0)."
            )
        if not 0.0 <= float(feedback_decay) <= 1.0:
            raise ValueError(f"EProp: `feedback_decay` must be in [0, 1], got {feedback_decay!r}.")
        self.key = key
        self.feedback_decay = float(feedback_decay)
        self.reset_in_eligibility = bool(reset_in_eligibility)

    def view(self, model) -> Layers:
        return eprop_layers(model, self.reset_in_eligibility)

    def random_feedback(self, model: AbstractNeuron) -> Float[Array, "hidden out"]:
        """The random feedback matrix drawn from `key` for `model`'s readout."""
        weight = self.view(model)[-1].affine.weight
        n_hidden, n_out = weight.shape[1], weight.shape[0]
        return jax.random.normal(self.key, (n_hidden, n_out), weight.dtype) / math.sqrt(n_hidden)

    def init(self, model: AbstractNeuron) -> EPropState:
        layers = self.view(model)
        if self.feedback == "symmetric":
            return EPropState(feedback=None, readout=None)
        readout = layers[-1].affine.weight if self.feedback == "adaptive" else None
        return EPropState(feedback=self.random_feedback(model), readout=readout)

    def init_traces(self, model, state):
        if self.feedback == "adaptive":
            raise ValueError(
                "EProp(feedback='adaptive'): B follows the readout weights between updates "
                "through the rule state, which train_online's per-step updates do not carry. "
                "Use train_online_deferred or train_offline(rule=...), or feedback='random'."
            )
        return self._traces(model, state, self.init(model).feedback)

    def _traces(self, model, state, feedback) -> EPropTraces:
        traces = AbstractLayerwiseRule.init_traces(self, model, state)
        readout = EPropReadoutTraces(traces.layers[-1].eligibility, feedback)
        return EPropTraces((*traces.layers[:-1], readout))

    def start(self, model, x0, rule_state=None):
        if rule_state is None:
            return AbstractLayerwiseRule.start(self, model, x0)
        state = self.initial(model, x0)
        return state, self._traces(model, state, rule_state.feedback)

    def init_layer(self, layers, index, state, dtype):
        if index == len(layers) - 1:
            return EPropReadoutTraces(init_eligibility(layers[index], state, dtype), None)
        eligibility = init_eligibility(layers[index], state, dtype, self_path=False)
        zeros = lambda e: None if e is None else jnp.zeros(e.shape[1:], dtype)  # noqa: E731
        filtered = LayerSensitivity(
            weight=zeros(eligibility.weight),
            bias=zeros(eligibility.bias),
            neuron=tuple(zeros(e) for e in eligibility.neuron),
            recurrent=zeros(eligibility.recurrent),
        )
        return EPropLayerTraces(eligibility, filtered)

    def advance(self, layers, index, trace, step):
        eligibility, e = advance_eligibility(layers[index], trace.eligibility, step)
        if index == len(layers) - 1:  # the readout: its exact dy/dθ
            return EPropReadoutTraces(eligibility, trace.feedback), e
        # e-prop's eligibility trace e_t = dz_t/dθ from the vectors ε_(t-1) (for LIF,
        # ψ_t(λε_(t-1) + x_t)) is OSTL's output sensitivity with y_(t-1) as an input.
        kappa = jnp.clip(layers[-1].neuron.param("decay"), 0.0, 1.0).reshape(())
        old = trace.filtered
        keep = lambda f, new: None if f is None else kappa * f + new  # noqa: E731
        filtered = LayerSensitivity(
            weight=kappa * old.weight + e.weight,
            bias=keep(old.bias, e.bias),
            neuron=tuple(kappa * f + n for f, n in zip(old.neuron, e.neuron)),
            recurrent=keep(old.recurrent, e.recurrent),
        )
        return EPropLayerTraces(eligibility, filtered), filtered

    def gradient(self, layers, index, estimate, step, signal):
        return sensitivity_gradient(layers[index], estimate, signal)

    def passback(self, layers, index, trace, step, signal):
        if index < len(layers) - 1:
            return AbstractLayerwiseRule.passback(self, layers, index, trace, step, signal)
        layer = layers[index]
        feedback = layer.affine.weight.T if trace.feedback is None else trace.feedback
        return feedback @ (signal * step.local.y_input)

    def advance_feedback(self, model: AbstractNeuron, rule_state: EPropState) -> EPropState:
        r"""Adaptive feedback: $B + \Delta W^{out\top} - \mu(B - W^{out\top}_{old})$."""
        if self.feedback != "adaptive":
            return rule_state
        weight = self.view(model)[-1].affine.weight
        old, feedback = rule_state.readout, rule_state.feedback
        feedback = feedback + (weight - old).T - self.feedback_decay * (feedback - old.T)
        return EPropState(feedback=feedback, readout=weight)

    def update(self, model, rule_state, loss, xs, ys, mask=None):
        check_per_step(loss, "EProp")
        if rule_state is None:  # as from the base class's init: start from ours
            rule_state = self.init(model)
        rule_state = self.advance_feedback(model, rule_state)
        return deferred_update(self, model, rule_state, loss, xs, ys, mask)
