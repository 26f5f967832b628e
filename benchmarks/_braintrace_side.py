"""The braintrace half of `peer_braintrace`: the benchmark network written for braintrace.

This file imports only numpy, JAX, brainstate, braintools and braintrace (never
eqslax), so it runs in braintrace's own environment. The network is written here
with braintrace's public building blocks (`brainstate.HiddenState`,
`brainstate.ParamState`, `braintrace.matmul`) rather than with brainpy's LIF, so that
its equations are exactly eqslax's (see `peer_braintrace.py` for them).
"""

import time
from typing import Any

import brainstate
import braintools
import braintrace
import jax
import jax.numpy as jnp
import numpy as np


class FastSigmoid(braintools.surrogate.Surrogate):
    """Heaviside forward ($x \\ge 0$), derivative $1/(1 + k|x|)^2$ (eqslax's `FastSigmoid`)."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def surrogate_grad(self, x):
        return 1.0 / (1.0 + self.slope * jnp.abs(x)) ** 2

    def surrogate_fun(self, x):
        return 0.5 * self.slope * x / (1.0 + self.slope * jnp.abs(x)) + 0.5


class LIFLayer(brainstate.nn.Module):
    """$v_t = \\lambda(v_{t-1} - \\vartheta s_{t-1}) + W x_t + b$, $s_t = H(v_t - \\vartheta)$.

    The hidden state is the pre-reset membrane $v_t$; the reset of step $t-1$ is applied
    when step $t$ reads it, which is eqslax's `LIF` (subtractive reset, decayed). With
    `recurrent`, the input is the concatenation $[x_t, s_{t-1}]$ through one weight.
    """

    def __init__(self, weight, bias, *, decay, threshold, slope, recurrent):
        super().__init__()
        self.size = int(weight.shape[1])
        self.decay, self.threshold, self.recurrent = decay, threshold, recurrent
        self.spike = FastSigmoid(slope)
        self.param = brainstate.ParamState(
            {"weight": jnp.asarray(weight), "bias": jnp.asarray(bias)}
        )

    def init_state(self, batch_size=None, **kwargs):
        self.v = brainstate.HiddenState(jnp.zeros((batch_size, self.size)))

    def reset_state(self, batch_size=None, **kwargs):
        self.v.value = jnp.zeros((batch_size, self.size))

    def update(self, x):
        previous = self.spike(self.v.value - self.threshold)
        if self.recurrent:
            x = jnp.concatenate([x, previous], axis=-1)
        current = braintrace.matmul(x, self.param.value["weight"], self.param.value["bias"])
        v = self.decay * (self.v.value - self.threshold * previous) + current
        self.v.value = v
        return self.spike(v - self.threshold)


class LeakyReadout(brainstate.nn.Module):
    """$r_t = \\kappa r_{t-1} + W z_t + b$ (eqslax's `LI` after a `Linear`)."""

    def __init__(self, weight, bias, *, decay):
        super().__init__()
        self.size, self.decay = int(weight.shape[1]), decay
        self.param = brainstate.ParamState(
            {"weight": jnp.asarray(weight), "bias": jnp.asarray(bias)}
        )

    def init_state(self, batch_size=None, **kwargs):
        self.r = brainstate.HiddenState(jnp.zeros((batch_size, self.size)))

    def reset_state(self, batch_size=None, **kwargs):
        self.r.value = jnp.zeros((batch_size, self.size))

    def update(self, z):
        matmul = braintrace.matmul(z, self.param.value["weight"], self.param.value["bias"])
        r = self.decay * self.r.value + matmul
        self.r.value = r
        return r


class Network(brainstate.nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def update(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def build(problem: dict[str, Any]) -> Network:
    """The network on `problem`'s weights (eqslax layout `(out, in)`, transposed here)."""
    c = problem["constants"]
    layers = []
    for k, (w, b) in enumerate(zip(problem["hidden_weights"], problem["hidden_biases"])):
        weight = w.T
        if problem["recurrent"]:
            weight = np.concatenate([weight, problem["recurrent_weights"][k].T], axis=0)
        layers.append(
            LIFLayer(
                weight,
                b,
                decay=c["decay"],
                threshold=c["threshold"],
                slope=c["slope"],
                recurrent=problem["recurrent"],
            )
        )
    layers.append(
        LeakyReadout(problem["readout_weight"].T, problem["readout_bias"], decay=c["readout_decay"])
    )
    return Network(layers)


ALGORITHMS = {
    "d_rtrl": (braintrace.D_RTRL, {}),
    "ostl_recurrent": (braintrace.OSTLRecurrent, {}),
    "eprop": (braintrace.EProp, {"kappa_filter_decay": "readout_decay"}),
    "pp_prop": (braintrace.pp_prop, {"decay_or_rank": "decay"}),  # presynaptic trace leak λ
}


def _cross_entropy(logits, labels):
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))


def gradient_function(problem: dict[str, Any], algorithm: str):
    """`() -> grads` of braintrace's online rule over the whole sequence, jitted."""
    net = build(problem)
    xs = jnp.asarray(problem["xs"]).transpose(1, 0, 2)  # braintrace is time-major
    batch, length = problem["xs"].shape[:2]
    ys = jnp.broadcast_to(jnp.asarray(problem["ys"]), (length, batch))
    cls, options = ALGORITHMS[algorithm]
    options = {k: problem["constants"][v] if isinstance(v, str) else v for k, v in options.items()}
    learner = braintrace.compile(net, cls, xs[0], batch_size=batch, **options)

    def step_loss(x, y):
        return _cross_entropy(learner(x), y)

    @brainstate.transform.jit
    def grads(xs, ys):
        brainstate.nn.reset_all_states(net, batch_size=batch)
        return learner.etrace_grad(xs, ys, step_fn=step_loss)

    return net, lambda: grads(xs, ys)


def named(problem: dict[str, Any], grads) -> dict[str, np.ndarray]:
    """braintrace's gradients under the names and layout of `peer_braintrace.named`."""
    out = {}
    n_hidden = len(problem["hidden_weights"])
    values = [grads[key] for key in sorted(grads, key=lambda key: key[1])]
    for k, g in enumerate(values):
        weight = np.asarray(g["weight"]).T
        if k == n_hidden:
            out["readout.weight"], out["readout.bias"] = weight, np.asarray(g["bias"])
            continue
        n_in = problem["hidden_weights"][k].shape[1]
        out[f"hidden{k}.weight"] = weight[:, :n_in]
        if problem["recurrent"]:
            out[f"hidden{k}.recurrent"] = weight[:, n_in:]
        out[f"hidden{k}.bias"] = np.asarray(g["bias"])
    return out


def forward(problem: dict[str, Any]) -> np.ndarray:
    """The readout over time, `(batch, time, out)`, of braintrace's network."""
    net = build(problem)
    batch = problem["xs"].shape[0]
    brainstate.nn.init_all_states(net, batch_size=batch)
    xs = jnp.asarray(problem["xs"]).transpose(1, 0, 2)
    outs = brainstate.transform.for_loop(net.update, xs)
    return np.asarray(outs).transpose(1, 0, 2)


def versions() -> dict[str, str]:
    return {
        "braintrace": braintrace.__version__,
        "brainstate": brainstate.__version__,
        "braintools": braintools.__version__,
        "jax": jax.__version__,
    }


def timed(call) -> float:
    start = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - start
