"""Layer-local rules written with the public toolkit `eqslax.layerwise` only: feedback
alignment on OSTL's eligibility and a one-step truncated rule, each < 40 lines, each
pinned to the identity that must hold."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from helpers import assert_tree_allclose, feedforward, random_spikes
from jaxtyping import Array

import eqslax
from eqslax import layerwise

LOSS = eqslax.PerStep()


class FeedbackAlignmentOSTL(layerwise.AbstractLayerwiseRule):
    r"""OSTL's exact per-layer eligibility, with the signal passed down through a fixed
    feedback matrix: $g^{l-1}_t = B^l(g^l_t \odot \partial y^l_t/\partial I^l_t)$ in
    place of $W^{l\top}$ (Lillicrap et al. 2016). `feedback[l]` is $B^l$ `(n_in, n)`."""

    traces_type: ClassVar[type] = eqslax.OSTLTraces
    feedback: tuple[Array, ...]

    def init_layer(self, layers, index, state, dtype):
        return layerwise.init_eligibility(layers[index], state, dtype)

    def advance(self, layers, index, trace, step):
        return layerwise.advance_eligibility(layers[index], trace, step)

    def gradient(self, layers, index, estimate, step, signal):
        return layerwise.sensitivity_gradient(layers[index], estimate, signal)

    def passback(self, layers, index, trace, step, signal):
        return self.feedback[index] @ (signal * step.local.y_input)


class OneStepTraces(eqx.Module):
    layers: tuple[None, ...]


class OneStep(layerwise.AbstractLayerwiseRule):
    r"""Every temporal path cut: $dy_t/d\theta \approx \partial y_t/\partial\theta$ with
    $h_{t-1}$ constant, the signal passed down at the same step. No traces."""

    traces_type: ClassVar[type] = OneStepTraces

    def init_layer(self, layers, index, state, dtype):
        return None

    def advance(self, layers, index, trace, step):
        return None, step

    def gradient(self, layers, index, estimate, step, signal):
        local = estimate.local
        return layerwise.factored_gradient(
            layers[index],
            signal * local.y_input,
            estimate.input,
            None,
            [signal * d for d in local.y_param],
            estimate.previous,
        )


def problem(key, sizes=(5, 4, 3), **neuron_kwargs):
    k = jax.random.split(key, 2)
    model = feedforward(k[0], list(sizes), **neuron_kwargs)
    xs = random_spikes(k[1], (2, 8, sizes[0]), 0.5)
    return model, xs, jnp.arange(2) % sizes[-1]


def transposed(model):
    return tuple(layer.affine.weight.T for layer in layerwise.Layers(model, "test"))


def random_feedback(model, key):
    layers = layerwise.Layers(model, "test")
    keys = jax.random.split(key, len(layers))
    return tuple(
        jax.random.normal(k, (layer.in_size, layer.size)) / jnp.sqrt(layer.size)
        for k, layer in zip(keys, layers)
    )


def test_feedback_alignment_with_transposed_weights_is_ostl():
    model, xs, ys = problem(jax.random.key(0), decay=0.8, train_decay=True)
    ostl = eqslax.OSTL().grad(model, LOSS, xs, ys)
    assert jnp.linalg.norm(ostl.layers[0].weight) > 0
    assert_tree_allclose(FeedbackAlignmentOSTL(transposed(model)).grad(model, LOSS, xs, ys), ostl)
    aligned = FeedbackAlignmentOSTL(random_feedback(model, jax.random.key(1)))
    random = aligned.grad(model, LOSS, xs, ys)
    assert_tree_allclose(random.layers[2:], ostl.layers[2:])  # the top layer is untouched
    gap = jnp.max(jnp.abs(random.layers[0].weight - ostl.layers[0].weight))
    assert gap > 0.1 * jnp.max(jnp.abs(ostl.layers[0].weight))  # the hidden layer is not


def test_feedback_alignment_trains_a_tiny_task():
    key = jax.random.split(jax.random.key(2), 3)
    model = feedforward(key[0], [8, 12, 2], decay=0.8)
    ys = jnp.arange(16) % 2
    rate = jnp.where((jnp.arange(8)[None, :] < 4) == (ys[:, None] == 0), 0.5, 0.05)
    xs = jax.random.bernoulli(key[1], rate[:, None, :], (16, 10, 8)).astype(jnp.float64)
    rule = FeedbackAlignmentOSTL(random_feedback(model, key[2]))
    step = eqslax.train_offline(model, LOSS, optax.adam(0.05), rule=rule)
    state, losses = step.init(model), []
    for _ in range(15):
        model, state, _, value = step(model, state, xs, ys)
        losses.append(float(value))
    assert min(losses[-3:]) < 0.7 * losses[0], losses


def test_one_step_rule_is_truncated_bptt_with_window_one():
    model, xs, ys = problem(jax.random.key(3), sizes=(5, 4, 4, 3), decay=0.7, train_decay=True)
    expected = eqslax.TruncatedBPTT(1).grad(model, LOSS, xs, ys)
    assert jnp.linalg.norm(expected.layers[0].weight) > 0
    assert_tree_allclose(OneStep().grad(model, LOSS, xs, ys), expected)
    recurrent = eqslax.Connect(
        [
            model.layers[0],
            eqslax.Recurrent(model.layers[1], key=jax.random.key(4)),
            *model.layers[2:],
        ]
    )
    assert_tree_allclose(
        OneStep().grad(recurrent, LOSS, xs, ys),
        eqslax.TruncatedBPTT(1).grad(recurrent, LOSS, xs, ys),
    )


class DenseOneStep(layerwise.AbstractLayerwiseRule):
    """`OneStep` with its weight gradients written out per sample (no factors)."""

    traces_type: ClassVar[type] = OneStepTraces

    def init_layer(self, layers, index, state, dtype):
        return None

    def advance(self, layers, index, trace, step):
        return None, step

    def gradient(self, layers, index, estimate, step, signal):
        return layerwise.dense(OneStep().gradient(layers, index, estimate, step, signal))


def test_outer_is_the_sum_of_its_products():
    r"""$\sum_s p_s \otimes a_s$ over the shared leading axes (here batch and position),
    for vector factors and for a row per unit; one term is the outer product itself."""
    k = jax.random.split(jax.random.key(5), 3)
    post = jax.random.normal(k[0], (3, 2, 4))
    pre = jax.random.normal(k[1], (3, 2, 5))
    rows = jax.random.normal(k[2], (3, 2, 4, 5))
    vectors = layerwise.Outer(post, pre, (4, 5)).dense()
    assert jnp.allclose(vectors, jnp.einsum("bpi,bpj->ij", post, pre), rtol=1e-12)
    by_rows = layerwise.Outer(post, rows, (20,)).dense()
    assert jnp.allclose(by_rows, jnp.einsum("bpi,bpij->ij", post, rows).reshape(20), rtol=1e-12)
    one = layerwise.Outer(post[0, 0], pre[0, 0], (4, 5)).dense()
    assert jnp.array_equal(one, jnp.outer(post[0, 0], pre[0, 0]))


def test_dense_and_factored_weight_gradients_agree():
    model, xs, ys = problem(jax.random.key(6), sizes=(5, 4, 3), decay=0.7, train_decay=True)
    dense, factored = DenseOneStep(), OneStep()
    assert_tree_allclose(dense.grad(model, LOSS, xs, ys), factored.grad(model, LOSS, xs, ys))
    steps = [eqslax.train_online(model, r, LOSS, optax.sgd(0.1)) for r in (dense, factored)]
    trained = [step(model, step.init(model), xs, ys)[0] for step in steps]
    assert_tree_allclose(trained[0], trained[1])
