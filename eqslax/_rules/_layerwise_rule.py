"""`AbstractLayerwiseRule`: the per-step sweep of every layer-local rule, written once."""

import abc

import equinox as eqx
import jax
from jaxtyping import Array, PyTree

from .._precision import check_one_float_dtype
from ._conv import Positions
from ._layers import Layers, zeros_like_grads
from ._layerwise import LayerGrads, LayerStep, float_dtype, neuron_step, passback
from ._online import AbstractOnlineRule
from ._outer import dense


def forward(layers: Layers, state, x: Array):
    """One step through every layer (then the readout, if any).

    Returns `(state, output, steps, factor)`: the new model state, the model output,
    one [`eqslax.layerwise.LayerStep`][] per layer and the factor
    $\\partial o_t/\\partial y^{L}_t$ of the readout (`1.0` without one)."""
    steps, h = [], x
    for index, _ in enumerate(layers):
        previous = layers.previous_output(state, index)
        h = layers.layer_input(index, h)
        current = layers.current(index, h, previous)
        layer_state = layers.neuron_state(state, index)
        new_state, y, local = neuron_step(layers[index].neuron, layer_state, current)
        state = layers.with_state(state, index, new_state, y)
        steps.append(LayerStep(input=h, previous=previous, local=local, output=y))
        h = y
    factor = 1.0
    if layers.readout is not None:
        readout_state, h, local = neuron_step(layers.readout, state.layers[-1], h)
        state = eqx.tree_at(lambda s: s.layers, state, (*state.layers[:-1], readout_state))
        factor = local.y_input
    return state, h, tuple(steps), factor


class AbstractLayerwiseRule(AbstractOnlineRule):
    r"""An online rule that is local to each layer of a [`eqslax.layerwise.Layers`][]
    view. This base class writes the step once:

    1. forward through the layers, keeping each layer's input, previous output and local
       derivatives ([`eqslax.layerwise.LayerStep`][]);
    2. the learning signal at the top, $g^L_t = \partial\ell_t/\partial y^L_t$ (times
       $\partial o_t/\partial y^L_t$ if the view has a readout);
    3. for $l = L-1, \dots, 0$: `advance` the layer's trace, turn the signal into the
       layer's gradient with `gradient`, and `passback` the signal to the layer below.

    A concrete rule supplies those per-layer hooks and `init_layer`; traces are a module
    with a `layers` field holding one trace per layer (`traces_type`).

    A convolutional layer (`kind == "conv"`) is handed to the hooks as the dense layer it
    is at one output position (weight $W^{flat}$ on the unfolded input patch), and the
    hooks are `jax.vmap`ped over positions: its trace has a leading position axis, the
    gradient of the shared weight, bias and neuron parameters is summed over positions,
    and the signal passed down is folded onto the input map by the transpose of the
    unfolding. A rule written for dense layers thus runs on convolutions unchanged.

    **Hooks** (all receive the view `layers` and the layer number `index`):

    - `init_layer(layers, index, state, dtype)`: the trace before the first step (`state`
      is the layer's neuron state, `dtype` that of the traces).
    - `advance(layers, index, trace, step) -> (trace, estimate)`: the trace after this
      step and whatever `gradient` needs (e.g. $dy_t/d\theta$).
    - `gradient(layers, index, estimate, step, signal) -> LayerGrads`.
    - `passback(layers, index, trace, step, signal) -> signal below` (default
      $W^{l\top}(g^l_t \odot \partial y^l_t/\partial I^l_t)$).
    - `target_signal(layers, index, target, output) -> signal or None`: a learning
      signal for layer `index` below the top made from the step's `target` alone, which
      then replaces the one passed down (default `None`: keep the passback; OSTTP's
      direct target projection).
    - `view(model) -> Layers`: how the rule sees the model (default `Layers(model, name)`).
    """

    traces_type: eqx.AbstractClassVar[type]

    def view(self, model) -> Layers:
        """The layer-wise view of `model` this rule works on (raises for unsupported
        layers, naming them)."""
        return Layers(model, type(self).__name__)

    @abc.abstractmethod
    def init_layer(self, layers: Layers, index: int, state: PyTree, dtype) -> PyTree:
        """Layer `index`'s trace before the first step."""

    @abc.abstractmethod
    def advance(
        self, layers: Layers, index: int, trace: PyTree, step: LayerStep
    ) -> tuple[PyTree, PyTree]:
        """Layer `index`'s trace after this step, and what `gradient` needs."""

    @abc.abstractmethod
    def gradient(
        self, layers: Layers, index: int, estimate: PyTree, step: LayerStep, signal: Array
    ) -> LayerGrads:
        """Layer `index`'s gradient from its `estimate` and learning `signal`."""

    def passback(
        self, layers: Layers, index: int, trace: PyTree, step: LayerStep, signal: Array
    ) -> Array:
        """The learning signal of the layer below."""
        return passback(layers[index], step, signal)

    def target_signal(
        self, layers: Layers, index: int, target: Array, output: Array
    ) -> Array | None:
        """Layer `index`'s learning signal from this step's `target` (and the model
        `output`), or `None`: the signal `passback` sends down from the layer above."""
        return None

    def init_traces(self, model, state):
        check_one_float_dtype(model, type(self).__name__)
        layers = self.view(model)
        dtype = float_dtype(state)
        per_layer = tuple(
            self._init_layer(layers, index, layers.neuron_state(state, index), dtype)
            for index in range(len(layers))
        )
        return self.traces_type(per_layer)

    def _init_layer(self, layers, index, state, dtype):
        if layers[index].kind != "conv":
            return self.init_layer(layers, index, state, dtype)
        positions = Positions(layers, index)
        return positions.map(
            lambda view, s: self.init_layer(view, index, s, dtype), positions.state(state)
        )

    def _layer_step(self, layers, index, trace, step, signal):
        """`advance`, `gradient` and (above the first layer) `passback` of layer `index`:
        `(trace, LayerGrads, signal below or None)`; a convolution runs them per position."""

        def hooks(layers, trace, step, signal):
            trace, estimate = self.advance(layers, index, trace, step)
            grads = self.gradient(layers, index, estimate, step, signal)
            below = self.passback(layers, index, trace, step, signal) if index else None
            return trace, grads, below

        if layers[index].kind != "conv":
            return hooks(layers, trace, step, signal)
        positions = Positions(layers, index)
        trace, grads, below = positions.map(
            hooks, trace, positions.step(step), positions.units(signal)
        )
        below = None if below is None else positions.fold(step, below)
        return trace, positions.grads(grads), below

    def step(self, model, state, traces, x, label, loss):
        state, traces, grads, y, value = self.factored_step(model, state, traces, x, label, loss)
        return state, traces, dense(grads), y, value

    def factored_step(self, model, state, traces, x, label, loss):
        layers = self.view(model)
        state, y, steps, factor = forward(layers, state, x)
        value, signal = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        signal = signal * factor
        grads = zeros_like_grads(model)
        new = list(traces.layers)
        for index in reversed(range(len(layers))):
            new[index], layer_grads, below = self._layer_step(
                layers, index, traces.layers[index], steps[index], signal
            )
            grads = layers.write(grads, index, layer_grads)
            if index:
                direct = self.target_signal(layers, index - 1, label, y)
                signal = below if direct is None else direct
                signal = signal.reshape(steps[index - 1].output.shape)
        traces = eqx.tree_at(lambda t: t.layers, traces, tuple(new), is_leaf=lambda x: x is None)
        return state, traces, grads, y, value
