"""Shared test utilities: tree comparison, random models and registries."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

import eqslax


def tree_allclose(a, b, rtol=1e-10, atol=1e-12) -> bool:
    """Same structure and every array leaf close."""
    la, ta = jtu.tree_flatten(eqx.filter(a, eqx.is_array))
    lb, tb = jtu.tree_flatten(eqx.filter(b, eqx.is_array))
    if ta != tb:
        return False
    return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(la, lb))


def assert_tree_allclose(a, b, rtol=1e-10, atol=1e-12):
    la = jtu.tree_leaves_with_path(eqx.filter(a, eqx.is_array))
    lb = jtu.tree_leaves(eqx.filter(b, eqx.is_array))
    assert len(la) == len(lb), "different tree structures"
    for (path, x), y in zip(la, lb):
        np.testing.assert_allclose(
            x, y, rtol=rtol, atol=atol, err_msg=f"leaf {jtu.keystr(path)}"
        )


def random_spikes(key, shape, rate=0.3):
    return jax.random.bernoulli(key, rate, shape).astype(jnp.float64)


def feedforward(key, sizes, neuron=eqslax.LIF, **neuron_kwargs):
    """Linear -> neuron for each consecutive pair of ``sizes``; weights scaled up so
    that the random network actually spikes."""
    keys = jax.random.split(key, len(sizes))
    layers = []
    for k, (n_in, n_out) in zip(keys, zip(sizes[:-1], sizes[1:])):
        linear = eqx.nn.Linear(n_in, n_out, key=k)
        linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3.0)
        layers += [linear, neuron(n_out, **neuron_kwargs)]
    return eqslax.Connect(layers)
