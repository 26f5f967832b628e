# %% [markdown]
# # 5. Your own neuron and your own learning rule
#
# ## A neuron in 40 lines
#
# A neuron is an `eqx.Module` with a typed state record, `init_state()` and
# `__call__(state, x) -> (state, spikes)`. Subclassing `eqslax.AbstractSpikingPopulation`
# gives it the library's firing and reset (`self.spike`) and frozen-parameter handling
# (`self.param`). Here a quadratic integrate-and-fire neuron,
# $v_t = \lambda u_{t-1} + \kappa u_{t-1}^2 + x_t$, with a trainable curvature $\kappa$.

# %%
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

import eqslax
from eqslax import layerwise

jax.config.update("jax_enable_x64", True)


class QIFState(eqx.Module):
    v: Float[Array, "*neurons"]


class QIF(eqslax.AbstractSpikingPopulation):
    shape: tuple[int, ...] = eqx.field(static=True)
    decay: Float[Array, ""]
    curvature: Float[Array, ""]
    threshold: Float[Array, ""]
    surrogate: eqslax.AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    reset_decay: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, shape: int | Sequence[int], curvature: float = 0.1):
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.decay, self.curvature = jnp.asarray(0.9), jnp.asarray(curvature)
        self.threshold = jnp.asarray(1.0)
        self.surrogate = eqslax.FastSigmoid()
        self.reset, self.detach_reset, self.reset_decay = "subtract", False, True
        self.frozen = ("decay", "threshold")          # the curvature is trained

    def init_state(self) -> QIFState:
        return QIFState(v=jnp.zeros(self.shape))

    def __call__(self, state: QIFState, x):
        u = state.v
        v = self.param("decay") * u + self.param("curvature") * u**2 + x
        spikes, v = self.spike(v, self.param("threshold"))
        return QIFState(v=v), spikes


# %% [markdown]
# Every rule that accepts an elementwise neuron now accepts it. The identity test you
# would write: exact rules agree with BPTT to machine precision in float64.

# %%
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
model = eqslax.Connect([eqx.nn.Linear(6, 8, key=k1), QIF(8),
                        eqx.nn.Linear(8, 3, key=k2), eqslax.LI(3)])
xs = jax.random.uniform(k3, (4, 30, 6), jnp.float64)
ys = jnp.array([0, 1, 2, 1])
loss = eqslax.PerStep()
bptt = eqslax.BPTT().grad(model, loss, xs, ys)


def max_relative_error(a, b):
    return max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-300))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


print("RTRL vs BPTT:", max_relative_error(eqslax.RTRL().grad(model, loss, xs, ys), bptt))
ostl = eqslax.OSTL().grad(model, loss, xs, ys)
print("OSTL vs BPTT, readout layer:", max_relative_error(ostl.layers[2], bptt.layers[2]))
print("d loss / d curvature (BPTT):", float(bptt.layers[1].curvature))

# %% [markdown]
# ## A learning rule in 30 lines: the forward gradient
#
# A rule is an `eqslax.AbstractLearningRule`: `init(model)` gives its state and
# `update(model, state, loss, xs, ys)` returns a gradient shaped like
# `eqslax.trainable(model)`. The forward gradient (Baydin et al. 2022) draws a random
# tangent $v \sim \mathcal N(0, I)$ and returns $(\nabla L \cdot v)\, v$, one forward-mode
# JVP and no backward pass; since $\mathbb E[v v^\top] = I$ it is an unbiased estimate of
# $\nabla L$.

# %%
def batch_loss(params, static, loss, xs, ys):
    """The batch-mean loss of the model `params + static`, and its outputs."""
    net = eqx.combine(params, static)
    outputs = jax.vmap(lambda x: eqslax.simulate(net, x)[1])(xs)
    return jnp.mean(jax.vmap(loss)(outputs, ys)), outputs


def random_tangent(params, key):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)])


class ForwardGradient(eqslax.AbstractLearningRule):
    def init(self, model):
        return jax.random.key(0)

    def update(self, model, key, loss, xs, ys):
        key, draw = jax.random.split(key)
        params, static = eqx.partition(model, eqslax.trainable_mask(model))
        tangent = random_tangent(params, draw)
        (value, outputs), (slope, _) = jax.jvp(
            lambda p: batch_loss(p, static, loss, xs, ys), (params,), (tangent,))
        grads = jax.tree.map(lambda v: slope * v, tangent)
        return grads, key, eqslax.Aux(outputs=outputs, loss=value)


# %% [markdown]
# The identities it must satisfy: the directional derivative equals BPTT's gradient
# projected on the tangent (exactly, in float64), and the mean over many draws converges
# to BPTT's gradient.

# %%
rule = ForwardGradient()
params, static = eqx.partition(model, eqslax.trainable_mask(model))
tangent = random_tangent(params, jax.random.key(7))
_, (slope, _) = jax.jvp(lambda p: batch_loss(p, static, loss, xs, ys), (params,), (tangent,))
projection = sum(jnp.vdot(b, v) for b, v in zip(jax.tree.leaves(bptt), jax.tree.leaves(tangent)))
print(f"directional derivative {float(slope):.12f}, BPTT gradient · v {float(projection):.12f}")

update = eqx.filter_jit(rule.update)     # compiled once, reused for every draw
key, total, draws = rule.init(model), None, 200
for _ in range(draws):
    grads, key, aux = update(model, key, loss, xs, ys)
    total = grads if total is None else jax.tree.map(jnp.add, total, grads)
mean = jax.tree.map(lambda g: g / draws, total)
cosine = eqslax.analysis.cosine_similarity(mean, bptt).global_cosine
print(f"cosine to BPTT of the mean of {draws} forward gradients: {float(cosine):.3f}")


# %% [markdown]
# ## A layer-local rule with `eqslax.layerwise`: feedback alignment
#
# Layer-local rules (OSTL, OTTT, OTPE, e-prop) share one engine: at every step it runs the
# layers forward, takes the learning signal $g = \partial \ell_t / \partial y$ at the top
# and walks down, asking the rule four things per layer: its traces at $t = 0$
# (`init_layer`), how they advance (`advance`), the layer's gradient (`gradient`), and the
# signal for the layer below (`passback`). Feedback alignment (Lillicrap et al. 2016)
# keeps OSTL's exact per-layer eligibility and changes only the last answer: the signal
# goes down through a fixed matrix $B^l$ instead of $W^{l\top}$,
# $g^{l-1} = B^l (g^l \odot \partial y^l / \partial I^l)$.

# %%
class FeedbackAlignment(layerwise.AbstractLayerwiseRule):
    traces_type: ClassVar[type] = eqslax.OSTLTraces
    feedback: tuple[Array, ...]          # B^l, shaped like W^l transposed

    def init_layer(self, layers, index, state, dtype):
        return layerwise.init_eligibility(layers[index], state, dtype)

    def advance(self, layers, index, trace, step):
        return layerwise.advance_eligibility(layers[index], trace, step)

    def gradient(self, layers, index, estimate, step, signal):
        return layerwise.sensitivity_gradient(layers[index], estimate, signal)

    def passback(self, layers, index, trace, step, signal):
        return self.feedback[index] @ (signal * step.local.y_input)


# %% [markdown]
# The identity that pins it: with $B^l = W^{l\top}$ it is OSTL, to the last bit. With a
# random $B$ the readout layer's gradient is still OSTL's (nothing is passed to it) and
# the hidden layer's points elsewhere.

# %%
layers = layerwise.Layers(model, "tutorial")
transposed = tuple(layer.affine.weight.T for layer in layers)
aligned = FeedbackAlignment(feedback=transposed).grad(model, loss, xs, ys)
print("FA with B = W^T vs OSTL:", max_relative_error(aligned, ostl))
keys = jax.random.split(jax.random.key(3), len(transposed))
random_b = tuple(jax.random.normal(k, b.shape, b.dtype) / b.shape[1] ** 0.5
                 for k, b in zip(keys, transposed))
fa = FeedbackAlignment(feedback=random_b).grad(model, loss, xs, ys)
print("FA with random B, readout layer vs OSTL:", max_relative_error(fa.layers[2], ostl.layers[2]))
hidden = eqslax.analysis.cosine_similarity(fa.layers[0], ostl.layers[0]).global_cosine
print(f"FA with random B, hidden layer: cosine {float(hidden):.3f} to OSTL's")
