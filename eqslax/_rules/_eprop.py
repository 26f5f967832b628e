"""e-prop (Bellec et al. 2020): eligibility traces times a broadcast learning signal."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_choice
from .._connect import Connect
from .._neurons import LI, LIF, RLIF, AbstractNeuron, AbstractSpikingPopulation, LIFState, RLIFState
from .._parameters import trainable
from .._simulate import initial_state
from ._base import Aux
from ._layerwise import (
    check_layers,
    float_dtype,
    neuron_params,
    neuron_step,
    passback,
    reduce_to,
    set_layer_grads,
)
from ._online import AbstractOnlineRule, check_per_step
from ._ostl import (
    LayerEligibility,
    advance_eligibility,
    init_eligibility,
    layer_gradient,
    output_sensitivity,
)

FEEDBACK_MODES = ("symmetric", "random", "adaptive")


class EPropState(eqx.Module):
    """What e-prop keeps across batches: the feedback matrix $B$ (`None` for
    symmetric feedback) and, for adaptive feedback, the readout weight $W^{out}$
    seen at the last update."""

    feedback: Float[Array, "hidden out"] | None
    readout: Float[Array, "out hidden"] | None


class FilteredTraces(eqx.Module):
    r"""Readout-filtered eligibility traces $\bar e = \kappa \bar e + e$ of one layer,
    one per parameter: input weight, bias, each trainable neuron leaf (per unit) and,
    for an `RLIF`, the recurrent weight."""

    weight: Float[Array, "n n_in"]
    bias: Float[Array, " n"] | None
    neuron: tuple[Array, ...]
    recurrent: Float[Array, "n n"] | None


class EPropLayerTraces(eqx.Module):
    r"""One hidden layer: eligibility vectors $\epsilon = dh/d\theta$ (`eligibility`
    as in OSTL, `recurrent` `(k, n, n)` for an `RLIF`'s recurrent weight) and the
    filtered eligibility traces $\bar e$."""

    eligibility: LayerEligibility
    recurrent: Float[Array, "k n n"] | None
    filtered: FilteredTraces


class EPropTraces(eqx.Module):
    """Per-sample traces: the hidden layers', the readout's exact eligibility and the
    feedback matrix $B$ in use (`None` for symmetric feedback)."""

    hidden: tuple[EPropLayerTraces, ...]
    readout: LayerEligibility
    feedback: Float[Array, "hidden out"] | None


def _rebuild(cls, module, **changes):
    """`cls` filled with `module`'s fields (those `cls` declares) and `changes`,
    set field by field as Equinox itself unflattens a module: static fields such as
    `detach_reset` cannot be replaced with `eqx.tree_at`."""
    new = object.__new__(cls)
    for field in dataclasses.fields(cls):
        value = changes[field.name] if field.name in changes else getattr(module, field.name)
        object.__setattr__(new, field.name, value)
    return new


def eligibility_neuron(layer, reset_in_eligibility: bool):
    r"""The neuron whose per-unit Jacobian defines the eligibility vectors.

    An `RLIF` becomes the `LIF` it is, with $W^{rec} s_{t-1}$ an input. Unless
    `reset_in_eligibility`, a spiking neuron's reset is detached (the paper neglects
    the reset's dependence on the membrane); forward values are unchanged.
    """
    if isinstance(layer, RLIF):
        layer = _rebuild(LIF, layer)
    if isinstance(layer, AbstractSpikingPopulation) and not reset_in_eligibility:
        layer = _rebuild(type(layer), layer, detach_reset=True)
    return layer


def eprop_pairs(model, reset_in_eligibility: bool, owner: str = "EProp"):
    """`(pairs, views)`: the model's (Linear, neuron) pairs and the same pairs with
    `eligibility_neuron` views. The last pair must be the `LI` readout."""
    if isinstance(model, Connect):
        views_model = _rebuild(
            Connect,
            model,
            layers=tuple(eligibility_neuron(layer, reset_in_eligibility) for layer in model.layers),
        )
    else:
        views_model = model
    views = check_layers(views_model, owner)  # raises for anything but Connect of pairs
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
    pairs = tuple((model.layers[2 * i], model.layers[2 * i + 1]) for i in range(len(views)))
    return pairs, views


def _eligibility_state(pairs, state):
    """The model state as the eligibility views see it (`RLIFState` -> `LIFState`)."""
    layers = list(state.layers)
    for index, (_, neuron) in enumerate(pairs):
        if isinstance(neuron, RLIF):
            layers[2 * index + 1] = LIFState(v=layers[2 * index + 1].v)
    return eqx.tree_at(lambda s: s.layers, state, tuple(layers))


def _filter(previous, current, kappa):
    return None if previous is None else kappa * previous + current


def _hidden_layer(linear, neuron, view, traces: EPropLayerTraces, local, x, s_prev, signal, kappa):
    """Advance one hidden layer's traces and return its gradient $L_t \\odot \\bar e_t$."""
    # e-prop's eligibility trace e_t = dz_t/dθ from the vectors ε_{t-1} (for LIF,
    # ψ_t(λε_{t-1} + x_t)) is OSTL's output sensitivity of the layer.
    e = output_sensitivity(traces.eligibility, local, x)
    weight, bias, neuron_e = e.weight, e.bias, e.neuron
    recurrent_vectors, recurrent = None, None
    if traces.recurrent is not None:  # the presynaptic input is z_(t-1)
        recurrent_vectors = LayerEligibility(weight=traces.recurrent, bias=None, neuron=())
        recurrent = output_sensitivity(recurrent_vectors, local, s_prev).weight
    old = traces.filtered
    filtered = FilteredTraces(
        weight=kappa * old.weight + weight,
        bias=_filter(old.bias, bias, kappa),
        neuron=tuple(kappa * f + e for f, e in zip(old.neuron, neuron_e)),
        recurrent=_filter(old.recurrent, recurrent, kappa),
    )
    linear_grad = eqx.tree_at(
        lambda m: m.weight, trainable(linear), signal[:, None] * filtered.weight
    )
    if filtered.bias is not None:
        linear_grad = eqx.tree_at(lambda m: m.bias, linear_grad, signal * filtered.bias)
    leaves, treedef, _ = neuron_params(view)
    view_grad = jtu.tree_unflatten(
        treedef,
        [reduce_to(signal * f, leaf.shape) for leaf, f in zip(leaves, filtered.neuron)],
    )
    if isinstance(neuron, RLIF):
        neuron_grad = eqx.tree_at(
            lambda m: m.recurrent_weight, trainable(neuron), signal[:, None] * filtered.recurrent
        )
        for name in ("decay", "threshold"):
            if name not in neuron.frozen:
                neuron_grad = eqx.tree_at(
                    lambda m, name=name: getattr(m, name), neuron_grad, getattr(view_grad, name)
                )
    else:  # same leaves as the view; rebuilt with the neuron's own (static) structure
        neuron_grad = jtu.tree_unflatten(neuron_params(neuron)[1], jtu.tree_leaves(view_grad))
    new_recurrent = None
    if recurrent_vectors is not None:
        new_recurrent = advance_eligibility(recurrent_vectors, local, s_prev).weight
    new = EPropLayerTraces(
        eligibility=advance_eligibility(traces.eligibility, local, x),
        recurrent=new_recurrent,
        filtered=filtered,
    )
    return new, linear_grad, neuron_grad


class EProp(AbstractOnlineRule):
    r"""e-prop: eligibility traces times a learning signal broadcast from the readout.

    The network is `Connect([Linear, neuron, ..., Linear, LI])`: hidden layers of
    elementwise neurons (`LIF`, `ALIF`, ...) or recurrent `RLIF` layers, then a
    leaky readout $y_t = \kappa y_{t-1} + W^{out} z_t + b^{out}$ (`LI` with one
    scalar decay $\kappa$). For hidden unit $j$ and input $i$:

    - eligibility vector $\epsilon_t = \frac{\partial h_t}{\partial h_{t-1}}
      \epsilon_{t-1} + \frac{\partial h_t}{\partial W}$, with the reset's dependence on
      the membrane neglected by default (reset detached). For LIF,
      $\epsilon_{ji,t} = \lambda\epsilon_{ji,t-1} + x_{i,t}$; for ALIF (threshold
      $\vartheta + \beta a$), $\epsilon^a_{t+1} = \psi_t\epsilon^v_t +
      (\rho - \psi_t\beta)\epsilon^a_t$. For an `RLIF` the recurrent weight's
      presynaptic input is $z_{i,t-1}$.
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
    for one feed-forward hidden layer, or an `RLIF` with zero recurrent weights, with
    the leaky readout, symmetric feedback and a per-step loss, when the BPTT model
    detaches the reset (`detach_reset=True`) or the rule keeps it
    (`reset_in_eligibility=True`). Memory per sample and layer: $O(k\,n\,n_{in})$
    eligibility vectors plus $O(n\,n_{in})$ filtered traces.
    """

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

    def random_feedback(self, model: AbstractNeuron) -> Float[Array, "hidden out"]:
        """The random feedback matrix drawn from `key` for `model`'s readout."""
        pairs, _ = eprop_pairs(model, self.reset_in_eligibility)
        weight = pairs[-1][0].weight
        n_hidden, n_out = weight.shape[1], weight.shape[0]
        return jax.random.normal(self.key, (n_hidden, n_out), weight.dtype) / math.sqrt(n_hidden)

    def init(self, model: AbstractNeuron) -> EPropState:
        pairs, _ = eprop_pairs(model, self.reset_in_eligibility)
        if self.feedback == "symmetric":
            return EPropState(feedback=None, readout=None)
        readout = pairs[-1][0].weight if self.feedback == "adaptive" else None
        return EPropState(feedback=self.random_feedback(model), readout=readout)

    def init_traces(self, model, state):
        if self.feedback == "adaptive":
            raise ValueError(
                "EProp(feedback='adaptive'): B follows the readout weights between updates "
                "through the rule state, which train_online's per-step updates do not carry. "
                "Use train_online_deferred or train_offline(rule=...), or feedback='random'."
            )
        feedback = None if self.feedback == "symmetric" else self.random_feedback(model)
        return self._traces(model, state, feedback)

    def _traces(self, model, state, feedback) -> EPropTraces:
        pairs, views = eprop_pairs(model, self.reset_in_eligibility)
        dtype = float_dtype(state)
        eligibility = init_eligibility(views, _eligibility_state(pairs, state), dtype)
        hidden = []
        for (linear, neuron), trace in zip(pairs[:-1], eligibility):
            n, n_in = linear.out_features, linear.in_features
            rlif = isinstance(neuron, RLIF)
            zeros = jnp.zeros((n,), dtype)
            filtered = FilteredTraces(
                weight=jnp.zeros((n, n_in), dtype),
                bias=None if linear.bias is None else zeros,
                neuron=tuple(zeros for _ in trace.neuron),
                recurrent=jnp.zeros((n, n), dtype) if rlif else None,
            )
            recurrent = jnp.zeros((trace.weight.shape[0], n, n), dtype) if rlif else None
            hidden.append(EPropLayerTraces(trace, recurrent, filtered))
        return EPropTraces(hidden=tuple(hidden), readout=eligibility[-1], feedback=feedback)

    def step(self, model, state, traces, x, label, loss):
        pairs, views = eprop_pairs(model, self.reset_in_eligibility)
        layer_states, inputs, previous, locals_, h = list(state.layers), [], [], [], x
        for index, ((linear, neuron), (_, view)) in enumerate(zip(pairs[:-1], views[:-1])):
            layer_state, current = state.layers[2 * index + 1], linear(h)
            inputs.append(h)
            previous.append(layer_state.s if isinstance(neuron, RLIF) else None)
            if isinstance(neuron, RLIF):
                current = current + neuron.recurrent_weight @ layer_state.s
                layer_state = LIFState(v=layer_state.v)
            new_state, h, local = neuron_step(view, layer_state, current)
            if isinstance(neuron, RLIF):
                new_state = RLIFState(v=new_state.v, s=h)
            layer_states[2 * index + 1] = new_state
            locals_.append(local)
        readout_linear, readout = pairs[-1]
        new_state, y, local_out = neuron_step(readout, state.layers[-1], readout_linear(h))
        layer_states[-1] = new_state
        state = eqx.tree_at(lambda s: s.layers, state, tuple(layer_states))

        value, error = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        grads = jtu.tree_map(jnp.zeros_like, trainable(model))
        linear_grad, neuron_grad = layer_gradient(
            readout_linear, readout, traces.readout, local_out, h, error
        )
        grads = set_layer_grads(grads, len(pairs) - 1, linear_grad, neuron_grad)
        readout_trace = advance_eligibility(traces.readout, local_out, h)

        feedback = readout_linear.weight.T if traces.feedback is None else traces.feedback
        signal = feedback @ (error * local_out.y_input)
        kappa = jnp.clip(readout.param("decay"), 0.0, 1.0).reshape(())
        hidden = list(traces.hidden)
        for index in reversed(range(len(pairs) - 1)):
            (linear, neuron), (_, view) = pairs[index], views[index]
            hidden[index], linear_grad, neuron_grad = _hidden_layer(
                linear,
                neuron,
                view,
                traces.hidden[index],
                locals_[index],
                inputs[index],
                previous[index],
                signal,
                kappa,
            )
            grads = set_layer_grads(grads, index, linear_grad, neuron_grad)
            signal = passback(linear, locals_[index], signal)
        traces = EPropTraces(hidden=tuple(hidden), readout=readout_trace, feedback=traces.feedback)
        return state, traces, grads, y, value

    def advance_feedback(self, model: AbstractNeuron, rule_state: EPropState) -> EPropState:
        r"""Adaptive feedback: $B + \Delta W^{out\top} - \mu(B - W^{out\top}_{old})$."""
        if self.feedback != "adaptive":
            return rule_state
        pairs, _ = eprop_pairs(model, self.reset_in_eligibility)
        weight, old, feedback = pairs[-1][0].weight, rule_state.readout, rule_state.feedback
        feedback = feedback + (weight - old).T - self.feedback_decay * (feedback - old.T)
        return EPropState(feedback=feedback, readout=weight)

    def update(self, model, rule_state, loss, xs, ys):
        check_per_step(loss, "EProp")
        if rule_state is None:  # as from the base class's init: start from ours
            rule_state = self.init(model)
        rule_state = self.advance_feedback(model, rule_state)

        def run(xs, label):
            state = initial_state(model, xs[0])
            traces = self._traces(model, state, rule_state.feedback)

            def body(carry, x):
                state, traces, total = carry
                state, traces, grads, y, value = self.step(model, state, traces, x, label, loss)
                return (state, traces, jtu.tree_map(jnp.add, total, grads)), (y, value)

            zero = jtu.tree_map(jnp.zeros_like, trainable(model))
            (_, _, total), (outputs, values) = jax.lax.scan(body, (state, traces, zero), xs)
            return total, outputs, values

        totals, outputs, values = jax.vmap(run)(xs, ys)
        steps = xs.shape[1]
        grads = jtu.tree_map(lambda g: jnp.mean(g, axis=0) / steps, totals)
        return grads, rule_state, Aux(outputs=outputs, loss=jnp.mean(values))
