r"""Adapters that build the BPTT-speed network in peer libraries (snnTorch, Norse, Spyx).

Each adapter takes the eqslax benchmark model and its shared LIF constants
``(decay, threshold, slope)`` and returns a :class:`Peer`: the peer's network on the same
weights, and the eqslax model whose equations the peer's forward spikes must reproduce.
The peers' conventions, each matched by the reference model built here:

- **snnTorch** ``Leaky`` (1.0): :math:`v_t = \lambda v_{t-1} + I_t - \vartheta
  H(v_{t-1} - \vartheta)`, :math:`s_t = H(v_t - \vartheta)`; the reset is the previous
  step's spike, undecayed and detached (eqslax ``reset_decay=False, detach_reset=True``).
- **Norse** ``LIFBoxCell`` (1.1): :math:`v_t = v_{t-1} + \Delta t\,\tau^{-1}(I_t -
  v_{t-1})`, reset to zero. With :math:`\Delta t\,\tau^{-1} = 1 - \lambda` and Norse's
  weights and biases divided by :math:`1 - \lambda`, it is eqslax's ``reset="zero"`` on
  the benchmark's weights (without that division, nothing would spike).
- **Spyx** ``nn.LIF`` (1.0, Flax NNX): :math:`s_t = H(V_{t-1} - \vartheta)`, :math:`V_t =
  \lambda V_{t-1} + I_t - \vartheta s_t`: snnTorch's membrane, but each layer emits the
  spike of its previous membrane, so three layers lag three steps. A bias would reach the
  second layer one step before any spike does, so Spyx is checked (and timed) with zero
  biases.

The peers' Heaviside is :math:`H(x) = [x > 0]`, eqslax's :math:`[x \ge 0]`; they differ
only on exact ties, which the float inputs here do not produce. The surrogates are all
:math:`1/(1 + k|x|)^2` with eqslax's slope :math:`k`. Nothing here installs anything.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import eqslax


class Peer(NamedTuple):
    """A peer library's version of the benchmark network.

    ``reference`` is the eqslax model with the peer's equations and the same weights;
    the peer's output at step ``t`` must equal the reference's at ``t - lag``.
    ``forward(xs) -> spikes (batch, time, n)``; ``fwd_bwd(xs)`` returns a zero-argument
    call running the forward and backward pass of the summed output spikes.
    """

    reference: eqslax.Connect
    lag: int
    forward: Callable[[np.ndarray], np.ndarray]
    fwd_bwd: Callable[[np.ndarray], Callable[[], Any]]


def with_neurons(model, constants, weight_gain: float = 1.0, zero_bias: bool = False, **lif):
    """``model`` with its LIF layers rebuilt with the options ``lif`` and its linear maps
    scaled by ``weight_gain`` (biases zeroed on request)."""
    decay, threshold, slope = constants
    layers = []
    for linear in model.layers[0::2]:
        bias = jnp.zeros_like(linear.bias) if zero_bias else linear.bias * weight_gain
        linear = eqx.tree_at(
            lambda m: (m.weight, m.bias), linear, (linear.weight * weight_gain, bias)
        )
        neuron = eqslax.LIF(
            linear.out_features, decay, threshold, surrogate=eqslax.FastSigmoid(slope), **lif
        )
        layers += [linear, neuron]
    return eqslax.Connect(layers)


# --- PyTorch peers ----------------------------------------------------------------------


def _torch_layers(model, gain: float = 1.0):
    import torch

    linears = []
    for layer in model.layers[0::2]:
        linear = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(np.asarray(layer.weight) * gain, dtype=torch.float32))
            linear.bias.copy_(torch.tensor(np.asarray(layer.bias) * gain, dtype=torch.float32))
        linears.append(linear)
    return linears


def _torch_peer(reference, linears, cells, start) -> Peer:
    """Wrap an eager torch step loop: ``cells[k](current, state) -> (spikes, state)``,
    run on ``reference``'s linear maps (copied into ``linears``)."""
    import torch

    def run(x):
        states = [start(x, linear) for linear in linears]
        outputs = []
        for t in range(x.shape[1]):
            h = x[:, t]
            for k, (linear, cell) in enumerate(zip(linears, cells)):
                h, states[k] = cell(linear(h), states[k])
            outputs.append(h)
        return torch.stack(outputs, 1)

    def as_tensor(xs):
        return torch.from_numpy(np.asarray(xs, np.float32))

    def forward(xs):
        with torch.no_grad():
            return run(as_tensor(xs)).numpy()

    def fwd_bwd(xs):
        x = as_tensor(xs)

        def call():
            for linear in linears:
                linear.zero_grad()
            run(x).sum().backward()

        return call

    return Peer(reference, 0, forward, fwd_bwd)


def snntorch_peer(model, constants) -> Peer:
    import snntorch
    import torch
    from snntorch import surrogate

    decay, threshold, slope = constants
    reference = with_neurons(model, constants, reset_decay=False, detach_reset=True)
    cells = [
        snntorch.Leaky(
            beta=decay, threshold=threshold, spike_grad=surrogate.fast_sigmoid(slope=slope)
        )
        for _ in reference.layers[0::2]
    ]
    start = lambda x, linear: torch.zeros(x.shape[0], linear.out_features)
    return _torch_peer(reference, _torch_layers(reference), cells, start)


def norse_peer(model, constants) -> Peer:
    import norse.torch as norse
    import torch

    decay, threshold, slope = constants
    dt = 1e-3
    parameters = norse.LIFBoxParameters(
        tau_mem_inv=torch.tensor((1.0 - decay) / dt),
        v_leak=torch.tensor(0.0),
        v_th=torch.tensor(threshold),
        v_reset=torch.tensor(0.0),
        method="super",
        alpha=torch.tensor(slope),
    )
    # Norse scales its input current by dt / tau = 1 - decay; dividing the weights by it
    # gives eqslax's v_t = decay * v_{t-1} + I_t, and the same firing as the benchmark.
    reference = with_neurons(model, constants, reset="zero")
    cells = [norse.LIFBoxCell(parameters, dt=dt) for _ in reference.layers[0::2]]
    linears = _torch_layers(reference, gain=1.0 / (1.0 - decay))
    return _torch_peer(reference, linears, cells, lambda x, linear: None)


# --- Spyx (JAX, Flax NNX) ---------------------------------------------------------------


def spyx_peer(model, constants) -> Peer:
    import spyx
    from flax import nnx

    decay, threshold, slope = constants
    reference = with_neurons(model, constants, zero_bias=True, reset_decay=False)
    rngs = nnx.Rngs(0)
    layers = []
    for linear in reference.layers[0::2]:
        dense = nnx.Linear(linear.in_features, linear.out_features, rngs=rngs)
        dense.kernel = nnx.Param(jnp.asarray(linear.weight.T, jnp.float32))
        dense.bias = nnx.Param(jnp.asarray(linear.bias, jnp.float32))
        neuron = spyx.nn.LIF(
            (linear.out_features,),
            beta=decay,
            threshold=threshold,
            activation=spyx.axn.superspike(slope),
            rngs=rngs,
        )
        layers += [dense, neuron]
    network = spyx.nn.Sequential(*layers)
    # Differentiate the weights and biases only, as for eqslax (whose decay is frozen).
    weights = nnx.All(nnx.Param, lambda path, _: path[-1] in ("kernel", "bias"))
    graph, params, rest = nnx.split(network, weights, ...)

    def spikes(params, x):
        return spyx.nn.run(nnx.merge(graph, params, rest), x, batch_major=True)[0]

    apply = jax.jit(spikes)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(spikes(p, x))))
    forward = lambda xs: np.asarray(apply(params, jnp.asarray(xs, jnp.float32)))

    def fwd_bwd(xs):
        x = jnp.asarray(xs, jnp.float32)
        return lambda: grad(params, x)

    return Peer(reference, len(layers) // 2, forward, fwd_bwd)


ADAPTERS: dict[str, Callable[[eqslax.Connect, Any], Peer]] = {
    "spyx": spyx_peer,
    "snntorch": snntorch_peer,
    "norse": norse_peer,
}
