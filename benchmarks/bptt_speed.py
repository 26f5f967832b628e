r"""BPTT speed: eqslax against a hand-written scan and a matmul floor (Slax Fig. 11).

The task of the Slax paper's Fig. 11: three blocks ``Linear(n, n) -> LIF(n)``, a
sequence of 500 steps, a batch of 64, and the forward plus backward pass of the summed
output spikes. Each LIF layer :math:`l` computes, per step,

.. math::
    I^l_t = W^l s^{l-1}_t + b^l, \quad v^l_t = \lambda u^l_{t-1} + I^l_t, \quad
    s^l_t = H(v^l_t - \vartheta), \quad u^l_t = v^l_t - \vartheta s^l_t

with the fast-sigmoid surrogate :math:`\partial s/\partial v = 1/(1 + k|v - \vartheta|)^2`.
Six timings per size, in one process on the same weights and inputs:

- **eqslax**: ``jax.vmap`` of :func:`eqslax.simulate`, summed, differentiated with
  ``eqx.filter_grad`` under ``eqx.filter_jit`` (``schedule="step"``, the default);
- **eqslax layer-wise**: the same with ``schedule="layerwise"`` and the best ``unroll``
  of ``--unrolls`` (each timed first, interleaved);
- **train step**: one :func:`eqslax.train_offline` step (BPTT, an ``Accumulated`` spike
  count loss, ``optax.sgd``);
- **hand scan**, the framework floor: the same equations written directly as one
  ``jax.lax.scan`` over batched arrays (``x @ W.T + b``) with a ``jax.custom_jvp``
  Heaviside;
- **hand layer-wise**: the same equations by hand in the layer-wise order, each layer's
  input products for all steps as one GEMM and then a scan over the neuron alone;
- **matmul floor**, the physical limit: only the matrix products of all steps, each
  layer's as one GEMM on random spikes, forward and backward, without the recurrence.

Before timing, eqslax and the hand scan must produce the same spikes and gradients.

Run ``python -m benchmarks.bptt_speed --help`` for the options.
"""

import argparse
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

import eqslax

from ._common import (
    compile_seconds,
    device_note,
    first_call,
    markdown_table,
    new_figure,
    paired_ratio,
    parse_ints,
    save_figure,
    time_interleaved,
    write_json,
)
from ._peers import ADAPTERS, Peer

WEIGHT_SCALE = 3.0  # times eqx.nn.Linear's U(+-1/sqrt(n)), so that every layer spikes
INPUT_RATE = 0.2  # input spike probability per step and unit
GPU_SIZES = (1024, 2048, 4096, 6144)
Params = tuple[tuple[Array, Array], ...]


class LIFConstants(NamedTuple):
    decay: float
    threshold: float
    slope: float


def build_model(size: int, key: PRNGKeyArray, weight_scale: float = WEIGHT_SCALE) -> eqslax.Connect:
    """Three blocks of ``eqx.nn.Linear(size, size)`` then ``eqslax.LIF(size)``."""
    layers = []
    for layer_key in jax.random.split(key, 3):
        linear = eqx.nn.Linear(size, size, key=layer_key)
        linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * weight_scale)
        layers += [linear, eqslax.LIF(size)]
    return eqslax.Connect(layers)


def hand_parameters(model: eqslax.Connect) -> Params:
    """The ``(W, b)`` of each block, the same arrays the eqslax model holds."""
    return tuple((layer.weight, layer.bias) for layer in model.layers[0::2])


def lif_constants(model: eqslax.Connect) -> LIFConstants:
    """The LIF constants the hand scan bakes in; all layers must share them."""
    found = set()
    for layer in model.layers[1::2]:
        if not isinstance(layer, eqslax.LIF) or not isinstance(layer.surrogate, eqslax.FastSigmoid):
            raise TypeError(f"bptt_speed: expected LIF layers with FastSigmoid, got {layer!r}.")
        found.add((float(layer.decay), float(layer.threshold), float(layer.surrogate.slope)))
    if len(found) != 1:
        raise ValueError(f"bptt_speed: the LIF layers must share their constants, got {found}.")
    return LIFConstants(*found.pop())


def spike_input(key: PRNGKeyArray, batch: int, steps: int, size: int, dtype) -> Array:
    """Bernoulli input spikes ``(batch, steps, size)``."""
    return jax.random.bernoulli(key, INPUT_RATE, (batch, steps, size)).astype(dtype)


# --- eqslax -------------------------------------------------------------------------


def eqslax_spikes(model: eqslax.Connect, xs: Float[Array, "batch time in"]) -> Array:
    return jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)


def eqslax_loss(model: eqslax.Connect, xs: Float[Array, "batch time in"]) -> Array:
    return jnp.sum(eqslax_spikes(model, xs))


eqslax_forward = eqx.filter_jit(eqslax_spikes)
eqslax_fwd_bwd = eqx.filter_jit(eqx.filter_grad(eqslax_loss))


@functools.cache
def eqslax_fwd_bwd_for(schedule: str, unroll: int):
    """``eqslax_fwd_bwd`` with ``simulate(schedule=..., unroll=...)``."""

    def loss(model, xs):
        run = lambda x: eqslax.simulate(model, x, schedule=schedule, unroll=unroll)[1]  # noqa: E731
        return jnp.sum(jax.vmap(run)(xs))

    return eqx.filter_jit(eqx.filter_grad(loss))


# --- the framework floor: a hand-written scan ---------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def heaviside(x: Array, slope: float) -> Array:
    """:math:`H(x)`, with :math:`H(0) = 1`; derivative :math:`1/(1 + k|x|)^2`."""
    return (x >= 0).astype(x.dtype)


@heaviside.defjvp
def _heaviside_jvp(slope, primals, tangents):
    (x,), (dx,) = primals, tangents
    return heaviside(x, slope), dx / (1.0 + slope * jnp.abs(x)) ** 2


def hand_spikes(params: Params, xs: Array, constants: LIFConstants) -> Array:
    """Output spikes ``(time, batch, n)`` of the three blocks, one batched scan."""
    decay, threshold, slope = constants

    def step(potentials, x):
        h, carried = x, []
        for (weight, bias), u in zip(params, potentials):
            v = decay * u + (h @ weight.T + bias)
            h = heaviside(v - threshold, slope)
            carried.append(v - threshold * h)
        return tuple(carried), h

    start = tuple(jnp.zeros((xs.shape[0], w.shape[0]), xs.dtype) for w, _ in params)
    _, spikes = jax.lax.scan(step, start, jnp.swapaxes(xs, 0, 1))
    return spikes


hand_forward = jax.jit(hand_spikes, static_argnums=2)
hand_fwd_bwd = jax.jit(
    jax.grad(lambda params, xs, constants: jnp.sum(hand_spikes(params, xs, constants))),
    static_argnums=2,
)


def hand_layerwise_spikes(params: Params, xs: Array, constants: LIFConstants, unroll: int) -> Array:
    """Output spikes ``(time, batch, n)``, one layer at a time: the input currents of
    every step as one GEMM ``(T, B, n_in) @ W^T``, then a scan over the membrane alone."""
    decay, threshold, slope = constants

    def neuron(u, current):
        v = decay * u + current
        s = heaviside(v - threshold, slope)
        return v - threshold * s, s

    h = jnp.swapaxes(xs, 0, 1)
    for weight, bias in params:
        currents = h @ weight.T + bias
        start = jnp.zeros(currents.shape[1:], xs.dtype)
        _, h = jax.lax.scan(neuron, start, currents, unroll=unroll)
    return h


hand_layerwise_fwd_bwd = jax.jit(
    jax.grad(
        lambda params, xs, constants, unroll: jnp.sum(
            hand_layerwise_spikes(params, xs, constants, unroll)
        )
    ),
    static_argnums=(2, 3),
)


# --- the physical limit: the matmuls alone ------------------------------------------


def matmul_floor_loss(params: Params, hidden: tuple[Array, ...], inputs: Array, constants) -> Array:
    r"""Every step's products at once: :math:`\sum_l \sum H(S^l W^{l\top} + b^l - \vartheta)`
    with :math:`S^l` random spikes ``(time * batch, n)``. Its gradient with respect to the
    parameters and the hidden spikes costs the GEMMs BPTT needs (3 forward, 3 for
    :math:`\partial W`, 2 for the spikes of the layers below), with no recurrence."""
    total = jnp.zeros((), inputs.dtype)
    for (weight, bias), spikes in zip(params, (inputs, *hidden)):
        total = total + jnp.sum(
            heaviside(spikes @ weight.T + bias - constants.threshold, constants.slope)
        )
    return total


matmul_fwd_bwd = jax.jit(jax.grad(matmul_floor_loss, argnums=(0, 1)), static_argnums=3)


# --- checks and one size -------------------------------------------------------------


def max_abs(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def check_agreement(model, eqslax_grads, hand_grads, xs, constants) -> dict[str, Any]:
    """Same spikes (exactly) and same weight and bias gradients (to rounding).
    `eqslax_grads`: one or more gradients (every variant timed) checked against
    `hand_grads`, itself one or more (the hand scan and its layer-wise form)."""
    spikes_eqslax = eqslax_forward(model, xs)
    spikes_hand = jnp.swapaxes(hand_forward(hand_parameters(model), xs, constants), 0, 1)
    if not isinstance(eqslax_grads, (list, tuple)):
        eqslax_grads = [eqslax_grads]
    if not isinstance(hand_grads, list):
        hand_grads = [hand_grads]
    reference, *other_hand = hand_grads
    candidates = [hand_parameters(g) for g in eqslax_grads] + other_hand
    grad_abs = max(
        max_abs(g, h)
        for ours in candidates
        for pair_g, pair_h in zip(ours, reference)
        for g, h in zip(pair_g, pair_h)
    )
    scale = max(float(jnp.max(jnp.abs(h))) for pair in reference for h in pair)
    grad_rel = grad_abs / max(scale, 1e-30)
    tolerance = 1e-10 if xs.dtype == jnp.float64 else 1e-4
    spike_diff = max_abs(spikes_eqslax, spikes_hand)
    return {
        "spike_max_abs_diff": spike_diff,
        "grad_max_abs_diff": grad_abs,
        "grad_max_rel_diff": grad_rel,
        "grad_rel_tolerance": tolerance,
        "output_rate": float(jnp.mean(spikes_eqslax)),
        "passed": spike_diff == 0.0 and grad_rel <= tolerance,
    }


def bench_size(size: int, args: argparse.Namespace, key: PRNGKeyArray) -> dict[str, Any]:
    model_key, input_key, label_key, floor_key = jax.random.split(key, 4)
    model = build_model(size, model_key)
    dtype = model.layers[0].weight.dtype
    params, constants = hand_parameters(model), lif_constants(model)
    xs = spike_input(input_key, args.batch, args.steps, size, dtype)
    compile_costs = {
        "eqslax": compile_seconds(eqslax_fwd_bwd, model, xs),
        "hand": compile_seconds(hand_fwd_bwd, params, xs, constants),
    }
    sweep = unroll_sweep(model, params, xs, constants, args)
    unroll, hand_unroll = sweep["best_eqslax"], sweep["best_hand"]
    layerwise = eqslax_fwd_bwd_for("layerwise", unroll)
    compile_costs["eqslax_layerwise"] = sweep["compile"][str(unroll)]
    # The first calls' outputs feed the agreement check, made before any timing.
    first = {}
    first["eqslax"], eqslax_grads = first_call(lambda: eqslax_fwd_bwd(model, xs))
    first["eqslax_layerwise"], layerwise_grads = first_call(lambda: layerwise(model, xs))
    first["hand"], hand_grads = first_call(lambda: hand_fwd_bwd(params, xs, constants))
    first["hand_layerwise"], hand_layerwise_grads = first_call(
        lambda: hand_layerwise_fwd_bwd(params, xs, constants, hand_unroll)
    )
    agreement = check_agreement(
        model, [eqslax_grads, layerwise_grads], [hand_grads, hand_layerwise_grads], xs, constants
    )

    step = eqslax.train_offline(model, eqslax.Accumulated(), optax.sgd(1e-3))
    state = step.init(model)
    labels = jax.random.randint(label_key, (args.batch,), 0, size)
    floor_keys = jax.random.split(floor_key, 3)
    rows = args.steps * args.batch
    inputs, *hidden = (spike_input(k, 1, rows, size, dtype)[0] for k in floor_keys)
    hidden = tuple(hidden)
    calls = {
        "eqslax": lambda: eqslax_fwd_bwd(model, xs),
        "eqslax_layerwise": lambda: layerwise(model, xs),
        "train_step": lambda: step(model, state, xs, labels),
        "hand": lambda: hand_fwd_bwd(params, xs, constants),
        "hand_layerwise": lambda: hand_layerwise_fwd_bwd(params, xs, constants, hand_unroll),
        "matmul": lambda: matmul_fwd_bwd(params, hidden, inputs, constants),
    }
    timings = time_interleaved(calls, args.repeats, first_s=first)
    t = {name: timing["median_s"] for name, timing in timings.items()}
    best_eqslax = min(("eqslax", "eqslax_layerwise"), key=t.get)
    best_hand = min(("hand", "hand_layerwise"), key=t.get)
    return {
        "size": size,
        "eqslax_s": t["eqslax"],
        "eqslax_layerwise_s": t["eqslax_layerwise"],
        "train_step_s": t["train_step"],
        "hand_s": t["hand"],
        "hand_layerwise_s": t["hand_layerwise"],
        "matmul_s": t["matmul"],
        "unroll": unroll,
        "hand_unroll": hand_unroll,
        "unroll_sweep": sweep,
        "ratio_eqslax_hand": t["eqslax"] / t["hand"],
        "ratio_eqslax_matmul": t["eqslax"] / t["matmul"],
        "ratio_eqslax_hand_paired": paired_ratio(timings, "eqslax", "hand"),
        "ratio_eqslax_hand_cpu": timings["eqslax"]["cpu_s"] / timings["hand"]["cpu_s"],
        "ratio_best_eqslax_best_hand_paired": paired_ratio(timings, best_eqslax, best_hand),
        "ratio_layerwise_matmul": t["eqslax_layerwise"] / t["matmul"],
        "compile_s": sum(compile_costs["eqslax"].values()),
        "compile_layerwise_s": sum(compile_costs["eqslax_layerwise"].values()),
        "compile": compile_costs,
        "timings": timings,
        "agreement": agreement,
        "peers": run_peers(model, xs, args.repeats, calls["eqslax"]) if args.peers else {},
    }


def unroll_sweep(model, params, xs, constants, args) -> dict[str, Any]:
    """Time the layer-wise eqslax and hand programs at every ``--unrolls`` value,
    interleaved; the fastest of each is used for the main timings. eqslax's compile
    cost is measured for each factor first (larger factors compile longer)."""
    compile_costs = {
        str(u): compile_seconds(eqslax_fwd_bwd_for("layerwise", u), model, xs) for u in args.unrolls
    }
    if len(args.unrolls) == 1:
        (only,) = args.unrolls
        return {
            "unrolls": list(args.unrolls),
            "compile": compile_costs,
            "best_eqslax": only,
            "best_hand": only,
        }
    calls = {}
    for u in args.unrolls:
        calls[f"eqslax_{u}"] = functools.partial(eqslax_fwd_bwd_for("layerwise", u), model, xs)
        calls[f"hand_{u}"] = functools.partial(hand_layerwise_fwd_bwd, params, xs, constants, u)
    timings = time_interleaved(calls, args.repeats)
    median = {name: timing["median_s"] for name, timing in timings.items()}
    first = {name: timing["first_s"] for name, timing in timings.items()}
    best = {
        side: min(args.unrolls, key=lambda u: median[f"{side}_{u}"]) for side in ("eqslax", "hand")
    }
    return {
        "unrolls": list(args.unrolls),
        "median_s": median,
        "first_s": first,
        "compile": compile_costs,
        "best_eqslax": best["eqslax"],
        "best_hand": best["hand"],
    }


# --- optional peers (adapters in _peers.py) -------------------------------------------


def _with_constants(adapter):
    return lambda model: adapter(model, lif_constants(model))


PEERS: dict[str, Callable[[eqslax.Connect], Peer]] = {
    name: _with_constants(adapter) for name, adapter in ADAPTERS.items()
}
PEER_CHECK_STEPS = 20


def run_peers(model, xs, repeats: int, eqslax_call=None) -> dict[str, dict[str, Any]]:
    """For each installed peer: check its forward spikes against eqslax on the same
    weights and inputs for a few steps, and only then time it, interleaved with
    ``eqslax_call`` when given (for a ratio under the same load)."""
    results = {}
    for name, build in PEERS.items():
        if importlib.util.find_spec(name) is None:
            results[name] = {"status": "not installed"}
            continue
        try:
            peer = build(model)
            check = np.asarray(xs[:, : max(PEER_CHECK_STEPS, peer.lag + 1)])
            ours = np.asarray(eqslax_forward(peer.reference, jnp.asarray(check)))
            theirs = np.asarray(peer.forward(check))
            steps = ours.shape[1] - peer.lag
            ours, theirs = ours[:, :steps], theirs[:, peer.lag : peer.lag + steps]
            mismatch = float(np.mean(ours != theirs))
            if not np.any(ours):  # a silent window would pass any silent peer
                results[name] = {"status": "no spikes to compare", "spike_mismatch": mismatch}
                continue
            if mismatch > 1e-2:
                results[name] = {"status": "disagrees", "spike_mismatch": mismatch}
                continue
            calls = {name: peer.fwd_bwd(np.asarray(xs))}
            if eqslax_call is not None:
                calls["eqslax"] = eqslax_call
            timings = time_interleaved(calls, repeats)
            results[name] = {
                "status": "ok",
                "spike_mismatch": mismatch,
                "spike_max_abs_diff": float(np.max(np.abs(ours - theirs))),
                "check_steps": steps,
                "check_rate": float(np.mean(ours)),
                "lag": peer.lag,
                **timings[name],
            }
            if eqslax_call is not None:
                ours_t, theirs_t = timings["eqslax"], timings[name]
                results[name] |= {
                    "eqslax_s": ours_t["median_s"],
                    "ratio_to_eqslax": theirs_t["median_s"] / ours_t["median_s"],
                    "ratio_to_eqslax_paired": paired_ratio(timings, name, "eqslax"),
                    "ratio_to_eqslax_cpu": theirs_t["cpu_s"] / ours_t["cpu_s"],
                }
        except Exception as error:  # a peer's API drift must not stop the benchmark
            results[name] = {"status": f"failed: {type(error).__name__}: {error}"}
    return results


# --- report ---------------------------------------------------------------------------

HEADERS = (
    "size",
    "eqslax fwd+bwd s",
    "train step s",
    "hand scan s",
    "matmul floor s",
    "eqslax/hand",
    "eqslax/matmul",
    "compile s",
    "eqslax/hand paired",
    "eqslax/hand CPU",
    "agree",
)
LAYERWISE_HEADERS = (
    "size",
    "eqslax layer-wise s",
    "unroll",
    "hand layer-wise s",
    "hand unroll",
    "best eqslax / best hand paired",
    "layer-wise/matmul",
    "layer-wise compile s",
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    step = markdown_table(
        HEADERS,
        [
            (
                r["size"],
                r["eqslax_s"],
                r["train_step_s"],
                r["hand_s"],
                r["matmul_s"],
                r["ratio_eqslax_hand"],
                r["ratio_eqslax_matmul"],
                r["compile_s"],
                r["ratio_eqslax_hand_paired"],
                r["ratio_eqslax_hand_cpu"],
                "yes" if r["agreement"]["passed"] else "NO",
            )
            for r in rows
        ],
    )
    if not all("eqslax_layerwise_s" in r for r in rows):  # a file from before the schedules
        return step
    layerwise = markdown_table(
        LAYERWISE_HEADERS,
        [
            (
                r["size"],
                r["eqslax_layerwise_s"],
                r["unroll"],
                r["hand_layerwise_s"],
                r["hand_unroll"],
                r["ratio_best_eqslax_best_hand_paired"],
                r["ratio_layerwise_matmul"],
                r["compile_layerwise_s"],
            )
            for r in rows
        ],
    )
    return step + "\n\n" + layerwise


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """Layer-wise fwd+bwd seconds per unroll factor (only when several were swept)."""
    swept = [r for r in rows if "median_s" in r["unroll_sweep"]]
    if not swept:
        return ""
    unrolls = swept[0]["unroll_sweep"]["unrolls"]
    headers = ["size"] + [f"{side} unroll {u} s" for side in ("eqslax", "hand") for u in unrolls]
    return markdown_table(
        headers,
        [
            [r["size"]]
            + [
                r["unroll_sweep"]["median_s"][f"{side}_{u}"]
                for side in ("eqslax", "hand")
                for u in unrolls
            ]
            for r in swept
        ],
    )


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    figure, axes = new_figure(2)
    sizes = [r["size"] for r in rows]
    for key, label in (
        ("eqslax_s", "eqslax fwd+bwd"),
        ("eqslax_layerwise_s", "eqslax layer-wise"),
        ("train_step_s", "eqslax train step"),
        ("hand_s", "hand scan"),
        ("hand_layerwise_s", "hand layer-wise"),
        ("matmul_s", "matmul floor"),
    ):
        axes[0, 0].plot(sizes, [r[key] for r in rows], "o-", label=label)
    axes[0, 0].set(yscale="log", ylabel="seconds")
    axes[0, 0].set_title("forward + backward, 3 LIF layers")
    axes[0, 0].legend()
    axes[0, 1].plot(
        sizes, [r["ratio_eqslax_hand"] for r in rows], "o-", label="eqslax / hand (wall)"
    )
    axes[0, 1].plot(
        sizes, [r["ratio_eqslax_hand_paired"] for r in rows], "D-", label="eqslax / hand (paired)"
    )
    axes[0, 1].plot(
        sizes, [r["ratio_eqslax_hand_cpu"] for r in rows], "s--", label="eqslax / hand (CPU)"
    )
    axes[0, 1].plot(sizes, [r["ratio_eqslax_matmul"] for r in rows], "^-", label="eqslax / matmul")
    axes[0, 1].axhline(1.05, color="gray", linestyle=":", label="target 1.05")
    axes[0, 1].set(ylabel="ratio")
    for ax in axes[0]:
        size_axis(ax, sizes)
    axes[0, 1].set_title("overhead")
    axes[0, 1].legend()
    figure.tight_layout()
    save_figure(figure, path)


def size_axis(ax, sizes: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("units per layer")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bptt_speed", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes", default=None, help="units per layer, comma-separated (default 128,256,512)"
    )
    parser.add_argument("--steps", type=int, default=500, help="sequence length (default 500)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed rounds after warm-up (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="benchmark_results/bptt_speed", help="folder for results.json and PNG"
    )
    parser.add_argument(
        "--gpu", action="store_true", help=f"require a GPU; sizes default to {GPU_SIZES}"
    )
    parser.add_argument(
        "--unrolls",
        default="1",
        help="scan unroll factors tried for the layer-wise programs, comma-separated; "
        "the fastest is timed (default 1)",
    )
    parser.add_argument("--x64", action="store_true", help="run in float64")
    parser.add_argument(
        "--no-peers", dest="peers", action="store_false", help="skip Spyx/snnTorch/Norse"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="intra-op threads for the PyTorch peers (default 0: PyTorch's own default)",
    )
    args = parser.parse_args(argv)
    args.sizes = (
        parse_ints(args.sizes, "--sizes")
        if args.sizes
        else (GPU_SIZES if args.gpu else (128, 256, 512))
    )
    args.unrolls = parse_ints(args.unrolls, "--unrolls")
    for name in ("steps", "batch", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}.")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table; write ``results.json`` and ``bptt_speed.png``."""

    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    if args.gpu and jax.default_backend() != "gpu":
        raise SystemExit(f"--gpu given but JAX sees no GPU: {jax.devices()}")
    if args.peers and args.torch_threads > 0 and importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(args.torch_threads)
    print(f"devices: {jax.devices()}", flush=True)
    keys = jax.random.split(jax.random.key(args.seed), len(args.sizes))
    rows = []
    for size, key in zip(args.sizes, keys):
        rows.append(bench_size(size, args, key))
        print(f"size {size}: done ({rows[-1]['eqslax_s']:.4g} s eqslax)", flush=True)
    results = {
        "benchmark": "bptt_speed",
        "command": "python -m benchmarks.bptt_speed "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {k: v for k, v in vars(args).items()},
        "device": device_note(),
        "rows": rows,
        "agreement_passed": all(r["agreement"]["passed"] for r in rows),
    }
    print(table(rows))
    if sweep_table(rows):
        print("\n" + sweep_table(rows))
    for row in rows:
        a = row["agreement"]
        print(
            f"size {row['size']}: spikes max|diff| {a['spike_max_abs_diff']:.3g}, grads max|diff| "
            f"{a['grad_max_abs_diff']:.3g} (relative {a['grad_max_rel_diff']:.3g}), output rate "
            f"{a['output_rate']:.3f}; peers: "
            + (", ".join(f"{k} {v['status']}" for k, v in row["peers"].items()) or "skipped")
        )
    write_json(os.path.join(args.out, "results.json"), results)
    plot(rows, os.path.join(args.out, "bptt_speed.png"))
    return results


if __name__ == "__main__":
    main()
