"""Ready-made networks for the built-in tasks."""

from collections.abc import Sequence

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray

from ._checks import check_choice
from ._connect import Connect
from ._neurons import ALIF, IF, LI, LIF, CuBaLIF

_NEURONS = {"lif": LIF, "if": IF, "cubalif": CuBaLIF, "alif": ALIF}


def feedforward(
    sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    neuron: str = "lif",
    readout: str = "lif",
    weight_scale: float = 3.0,
    **neuron_options,
) -> Connect:
    """`Linear -> neuron` for each consecutive pair of `sizes` (e.g. `(20, 64, 10)`).

    `readout` is the last population: `"lif"` (spikes, read by counts) or `"li"`
    (membrane, read by max or mean over time). `weight_scale` multiplies the default
    `eqx.nn.Linear` initialisation $U(\\pm 1/\\sqrt{n_{in}})$, so that a sparse
    spiking input drives the first layer across threshold at the start of training.
    """
    check_choice(neuron, "neuron", tuple(_NEURONS), "feedforward")
    check_choice(readout, "readout", ("lif", "li"), "feedforward")
    if len(sizes) < 2:
        raise ValueError(f"feedforward: `sizes` needs at least input and output, got {sizes!r}.")
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for index, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        linear = eqx.nn.Linear(n_in, n_out, key=k)
        layers.append(eqx.tree_at(lambda m: m.weight, linear, linear.weight * weight_scale))
        last = index == len(sizes) - 2
        if last and readout == "li":
            layers.append(LI(n_out))
        else:
            layers.append(_NEURONS[neuron](n_out, **neuron_options))
    return Connect(layers)
