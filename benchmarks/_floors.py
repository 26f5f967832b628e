r"""Hand-written floors for the online rules: OTTT and OSTL on the memory benchmark's
network, written directly with `jnp` (no eqslax machinery), as `bptt_speed` has its hand
scan for BPTT.

The network is `eqslax.feedforward((n_in, n, n_out), readout="li")`: `Linear -> LIF ->
Linear -> LI`, with the LIF's subtractive reset (not detached) decayed at the next step,
the fast-sigmoid surrogate $\sigma'(x) = 1/(1 + k|x|)^2$, and the per-step softmax
cross-entropy on the readout membrane. Per step, batched over samples $b$:

    I1 = x W1ᵀ + b1;  v1 = λ1 u1 + I1;  s = H(v1 − ϑ);  u1 = v1 − ϑ s
    v2 = λ2 v2 + s W2ᵀ + b2;  g2 = softmax(v2) − onehot(c);  σ' = σ'(v1 − ϑ)
    δ1 = (g2 W2) ⊙ σ'

**OTTT** keeps presynaptic traces $\hat a^1 = \lambda_1 \hat a^1 + x$,
$\hat a^2 = \lambda_2 \hat a^2 + s$ (`(B, n_in)`, `(B, n)`) and bias traces
$\hat r = \lambda \hat r + 1$; its step gradient is one GEMM over the batch per weight,
$\nabla W^1 \mathrel{+}= \delta_1^\top \hat a^1$, $\nabla W^2 \mathrel{+}= g_2^\top \hat a^2$.

**OSTL** is exact per layer. The LI readout's eligibility does not depend on the output
unit, $e^2 = \lambda_2 e^2 + s$ (`(B, n)`, the same as OTTT's trace). The LIF layer's
does, through the reset: with $p = \lambda_1 E + x$ (`(B, n, n_in)`),
$\nabla W^1 \mathrel{+}= \sum_b \delta_{1,b} \otimes$ rows of $p_b$ and
$E = (1 - \vartheta\sigma') \odot p$; the bias the same with $x \equiv 1$.

Both scan over time with the step index in the carry and read `xs[:, t]` in place (no
time-major copy, no array of indices), keep no per-step outputs, and return the gradients
summed over time and batch divided by $T \cdot B$, as eqslax's deferred `grad`: their
memory is flat in $T$.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class Network(NamedTuple):
    """The numbers of the benchmark network, read once from the eqslax model."""

    w1: Array
    b1: Array
    w2: Array
    b2: Array
    decay1: Array
    threshold: Array
    slope: Array
    decay2: Array


def network(model) -> Network:
    """`model` = `Connect([Linear, LIF, Linear, LI])`, as plain arrays."""
    first, lif, second, li = model.layers
    return Network(
        first.weight,
        first.bias,
        second.weight,
        second.bias,
        jnp.clip(lif.decay, 0.0, 1.0),
        lif.threshold,
        lif.surrogate.slope,
        jnp.clip(li.decay, 0.0, 1.0),
    )


def _spike(v, threshold, slope):
    """Heaviside spikes and the fast-sigmoid derivative at `v - threshold`."""
    x = v - threshold
    return (x >= 0).astype(v.dtype), 1.0 / (1.0 + slope * jnp.abs(x)) ** 2


def _forward_step(net: Network, u1, v2, x, label):
    """One step of the batch: new membranes, spikes, surrogate and the readout signal."""
    v1 = net.decay1 * u1 + x @ net.w1.T + net.b1
    s, sigma = _spike(v1, net.threshold, net.slope)
    u1 = v1 - net.threshold * s
    v2 = net.decay2 * v2 + s @ net.w2.T + net.b2
    g2 = jax.nn.softmax(v2) - jax.nn.one_hot(label, v2.shape[-1], dtype=v2.dtype)
    delta1 = (g2 @ net.w2) * sigma
    return u1, v2, s, sigma, g2, delta1


def _zeros_like(net: Network):
    return tuple(jnp.zeros_like(a) for a in (net.w1, net.b1, net.w2, net.b2))


@jax.jit
def ottt_grad(net: Network, xs: Array, labels: Array):
    """OTTT's deferred gradient `(dW1, db1, dW2, db2)` for `xs` `(B, T, n_in)`."""
    batch, steps, n_in = xs.shape
    n, n_out = net.w1.shape[0], net.w2.shape[0]
    dtype = xs.dtype

    def body(carry, _):
        t, u1, v2, a1, r1, a2, r2, grads = carry
        x = jax.lax.dynamic_index_in_dim(xs, t, 1, keepdims=False)
        u1, v2, s, _, g2, delta1 = _forward_step(net, u1, v2, x, labels)
        a1, r1 = net.decay1 * a1 + x, net.decay1 * r1 + 1.0
        a2, r2 = net.decay2 * a2 + s, net.decay2 * r2 + 1.0
        dw1, db1, dw2, db2 = grads
        grads = (
            dw1 + delta1.T @ a1,
            db1 + jnp.sum(delta1, axis=0) * r1,
            dw2 + g2.T @ a2,
            db2 + jnp.sum(g2, axis=0) * r2,
        )
        return (t + 1, u1, v2, a1, r1, a2, r2, grads), None

    zeros = jnp.zeros
    carry = (
        jnp.zeros((), jnp.int32),
        zeros((batch, n), dtype),
        zeros((batch, n_out), dtype),
        zeros((batch, n_in), dtype),
        zeros((), dtype),
        zeros((batch, n), dtype),
        zeros((), dtype),
        _zeros_like(net),
    )
    (*_, grads), _ = jax.lax.scan(body, carry, length=steps)
    return tuple(g / (batch * steps) for g in grads)


@jax.jit
def ostl_grad(net: Network, xs: Array, labels: Array):
    """OSTL's deferred gradient `(dW1, db1, dW2, db2)` for `xs` `(B, T, n_in)`."""
    batch, steps, n_in = xs.shape
    n, n_out = net.w1.shape[0], net.w2.shape[0]
    dtype = xs.dtype

    def body(carry, _):
        t, u1, v2, e1, e1_bias, e2, r2, grads = carry
        x = jax.lax.dynamic_index_in_dim(xs, t, 1, keepdims=False)
        decay1 = net.decay1
        u1, v2, s, sigma, g2, delta1 = _forward_step(net, u1, v2, x, labels)
        p1 = decay1 * e1 + x[:, None, :]  # (B, n, n_in): dv1/dW1 per sample
        p1_bias = decay1 * e1_bias + 1.0
        keep = 1.0 - net.threshold * sigma  # du1/dv1 through the (attached) reset
        e2, r2 = net.decay2 * e2 + s, net.decay2 * r2 + 1.0
        dw1, db1, dw2, db2 = grads
        grads = (
            dw1 + jnp.einsum("bi,bij->ij", delta1, p1),
            db1 + jnp.sum(delta1 * p1_bias, axis=0),
            dw2 + g2.T @ e2,
            db2 + jnp.sum(g2, axis=0) * r2,
        )
        return (t + 1, u1, v2, keep[..., None] * p1, keep * p1_bias, e2, r2, grads), None

    zeros = jnp.zeros
    carry = (
        jnp.zeros((), jnp.int32),
        zeros((batch, n), dtype),
        zeros((batch, n_out), dtype),
        zeros((batch, n, n_in), dtype),
        zeros((batch, n), dtype),
        zeros((batch, n), dtype),
        zeros((), dtype),
        _zeros_like(net),
    )
    (*_, grads), _ = jax.lax.scan(body, carry, length=steps)
    return tuple(g / (batch * steps) for g in grads)


FLOORS = {"ottt": ottt_grad, "ostl": ostl_grad}


def as_tuple(grads) -> tuple[Array, Array, Array, Array]:
    """eqslax's gradient of the benchmark network as `(dW1, db1, dW2, db2)`."""
    first, second = grads.layers[0], grads.layers[2]
    return first.weight, first.bias, second.weight, second.bias
