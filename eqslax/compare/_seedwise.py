"""What the training loop measures, as one compiled program over every seed.

Each function here takes the seeds' models either stacked along a leading axis (the
vmapped-seeds path: one program for all seeds) or as a list (sequential seeds: one
compiled program called per seed), and per-seed arrays with a leading seed axis. Doing
the evaluation, gradient comparisons and parameter snapshots compiled, rather than op by
op, keeps the loop's overhead small next to the training it measures.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .. import analysis
from .._mask import with_mask
from .._metrics import _totals, add_totals, finish_metrics
from .._rules import BPTT
from .._simulate import simulate


def seedwise(function, vmapped: bool, shared: int = 0):
    """`function(model, *arrays)` over every seed: `models` stacked and vmapped when
    `vmapped`, else a list of models, each called with its seed's slice of `arrays`.
    The last `shared` arrays are the same for every seed (no seed axis). The results are
    stacked along a leading seed axis either way."""
    if vmapped:

        def call(models, *arrays):
            split = len(arrays) - shared
            axes = (eqx.if_array(0),) + (0,) * split + (None,) * shared
            return eqx.filter_vmap(function, in_axes=axes)(models, *arrays)

        return eqx.filter_jit(call)
    jitted = eqx.filter_jit(function)

    def each(models, *arrays):
        split = len(arrays) - shared
        outs = [
            jitted(m, *(a[s] for a in arrays[:split]), *arrays[split:])
            for s, m in enumerate(models)
        ]
        return jtu.tree_map(lambda *xs: jnp.stack(xs), *outs)

    return each


class Evaluation:
    """Sample-mean loss and task metrics of every seed's model over batches
    `(xs, ys, mask)` (chunks of `chunk` samples of arrays, as `eqslax.evaluate` takes
    them, or a loader's batches; `mask` None or the real steps of padded sequences);
    `place` puts each batch where the models are."""

    def __init__(self, loss, vmapped: bool, chunk: int = 256, place=lambda tree: tree):
        self.loss, self.chunk, self.place = loss, chunk, place

        def totals(model, xs, ys, mask):
            outputs = jax.vmap(lambda x: simulate(model, x)[1])(xs)
            losses = jax.vmap(lambda o, y, m: with_mask(loss, o, y, mask=m))(outputs, ys, mask)
            return jnp.sum(losses), _totals(loss, outputs, ys, mask)

        self.function = seedwise(totals, vmapped, shared=3)

    def __call__(self, models, batches, seeds: int) -> list[dict[str, float]]:
        """`batches`: an iterable of `(xs, ys, mask)`."""
        loss_sums, totals, n = np.zeros(seeds), None, 0
        for batch in batches:
            x, y, m = self.place(batch)
            sums, parts = self.function(models, x, y, m)
            loss_sums += np.asarray(sums, np.float64)
            totals = add_totals(totals, {k: np.asarray(v, np.float64) for k, v in parts.items()})
            n += x.shape[0]
        return [
            {"loss": float(loss_sums[s]) / n, **seed_metrics(self.loss, totals, s)}
            for s in range(seeds)
        ]


def similarity(rule, loss, vmapped: bool):
    """`(models, xs, ys) ->` every seed's `GradientComparison` of `rule`'s gradient with
    BPTT's on its batch, stacked along a leading seed axis."""

    def compare(model, xs, ys):
        return analysis.gradient_similarity(rule, BPTT(), model, loss, xs, ys)

    return seedwise(compare, vmapped)


def snapshot(vmapped: bool):
    """`models -> (seeds, params)`: every seed's trainable parameters as one vector."""
    return seedwise(analysis.flatten_params, vmapped)


def batch_totals(loss):
    """`outputs (seeds, batch, time, out), ys (seeds, batch, ...), mask (seeds, batch,
    time) or None ->` each seed's metric totals on its batch (`eqslax._metrics` sums,
    leading seed axis), as float64 host arrays; `eqslax._metrics.add_totals` accumulates
    them and `seed_metrics` finishes them."""

    @eqx.filter_jit
    def totals(outputs, ys, mask):
        return jax.vmap(lambda o, y, m: _totals(loss, o, y, m))(outputs, ys, mask)

    return lambda outputs, ys, mask=None: {
        k: np.asarray(v, np.float64) for k, v in totals(outputs, ys, mask).items()
    }


def seed_metrics(loss, totals: dict | None, seed: int) -> dict[str, float]:
    """Seed `seed`'s task metrics from per-seed totals."""
    mine = None if totals is None else {k: v[seed] for k, v in totals.items()}
    return finish_metrics(loss, mine)
