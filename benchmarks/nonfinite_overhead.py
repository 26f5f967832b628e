r"""Cost of the non-finite check in a training step, on the BPTT benchmark's model.

Every training step reports ``state.nonfinite``: whether a gradient or an updated
trainable parameter holds a NaN or an infinity, one reduction per leaf inside the jitted
step. This script times :func:`eqslax.train_offline`'s step (BPTT, ``Accumulated`` loss,
``optax.sgd``) on the model and inputs of :mod:`benchmarks.bptt_speed` against the same
step written with public pieces and without the check (``BPTT().update``, the optimiser,
``eqx.apply_updates``), interleaved in one process; the paired ratio is the overhead.

Run ``python -m benchmarks.nonfinite_overhead --help`` for the options.
"""

import argparse

import equinox as eqx
import jax
import optax

import eqslax

from ._common import device_note, paired_ratio, parse_ints, time_interleaved, write_json
from .bptt_speed import build_model, spike_input


class UncheckedStep(eqslax.AbstractTrainStep):
    """The offline BPTT step without the non-finite check, called through the same
    argument checks as eqslax's steps so that only the check differs."""

    loss: eqslax.AbstractLoss
    optimizer: optax.GradientTransformation

    def init_rule(self, model):
        return None

    def run(self, model, state, xs, ys):
        return _unchecked(self, model, state, xs, ys)


@eqx.filter_jit
def _unchecked(step, model, state, xs, ys):
    grads, rule_state, aux = eqslax.BPTT().update(model, state.rule, step.loss, xs, ys)
    updates, opt_state = step.optimizer.update(grads, state.optimizer, eqslax.trainable(model))
    model = eqx.apply_updates(model, updates)
    return model, eqslax.TrainState(opt_state, rule_state), aux.outputs, aux.loss


def measure(size: int, args: argparse.Namespace) -> dict:
    model_key, input_key, label_key = jax.random.split(jax.random.key(args.seed), 3)
    model = build_model(size, model_key)
    xs = spike_input(input_key, args.batch, args.steps, size, model.layers[0].weight.dtype)
    ys = jax.random.randint(label_key, (args.batch,), 0, size)
    step = eqslax.train_offline(model, eqslax.Accumulated(), optax.sgd(1e-3))
    state = step.init(model)
    plain = UncheckedStep(step.loss, step.optimizer)
    checked_model = step(model, state, xs, ys)[0]
    plain_model = plain(model, state, xs, ys)[0]
    same = all(
        bool((a == b).all())
        for a, b in zip(
            jax.tree_util.tree_leaves(checked_model), jax.tree_util.tree_leaves(plain_model)
        )
    )
    calls = {
        "checked": lambda: step(model, state, xs, ys),
        "unchecked": lambda: plain(model, state, xs, ys),
    }
    timings = time_interleaved(calls, args.repeats)
    return {
        "size": size,
        "same_update": same,
        "checked_s": timings["checked"]["median_s"],
        "unchecked_s": timings["unchecked"]["median_s"],
        "overhead_paired": paired_ratio(timings, "checked", "unchecked") - 1.0,
        "timings": timings,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="128,256", help="layer widths, comma-separated (as bptt_speed)"
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmark_results/nonfinite_overhead.json")
    args = parser.parse_args(argv)
    rows = [measure(size, args) for size in parse_ints(args.sizes, "--sizes")]
    for row in rows:
        print(
            f"size {row['size']}: checked {row['checked_s'] * 1e3:.2f} ms, unchecked "
            f"{row['unchecked_s'] * 1e3:.2f} ms, paired overhead "
            f"{100 * row['overhead_paired']:+.2f} %, same update: {row['same_update']}"
        )
    write_json(args.out, {"device": device_note(), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
