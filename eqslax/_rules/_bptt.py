"""Backpropagation through time, full and truncated."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from .._checks import shape_tuple
from .._losses import AbstractLoss
from .._mask import with_mask
from .._parameters import trainable_mask
from .._simulate import (
    SCHEDULES,
    check_unroll,
    initial_state,
    layerwise_layers,
    resolve_schedule,
    step_layers,
)
from ._base import AbstractLearningRule, Aux


def _unroll(model, xs, window: int | None, checkpoint: bool, state=None, schedule="step", unroll=1):
    """Run one sample; return outputs (time, *out), every layer's outputs and the
    final state (`state`: the state before the first step, default the model's).

    With `window` k, the carried state is passed through `stop_gradient` before
    steps k, 2k, ...: gradients never cross a window boundary. The initial state is not
    cut: when it depends on a parameter (`Izhikevich` starts at `v = c`), that path
    belongs to the first window, as in BPTT. `schedule` (already resolved, see
    `simulate`) `"layerwise"` runs one layer at a time; it needs `window=None`.
    `unroll`: steps per loop iteration, as in `simulate`.
    """
    if state is None:
        state = initial_state(model, xs[0])
    if schedule == "layerwise":
        final, layers = layerwise_layers(model, xs, state, checkpoint, unroll)
        return layers[-1], layers, final

    def step(state, inputs):
        t, x = inputs
        if window is not None:
            cut = (t % window == 0) & (t > 0)
            state = jtu.tree_map(lambda s: jnp.where(cut, jax.lax.stop_gradient(s), s), state)
        return step_layers(model, state, x)

    if checkpoint:
        step = jax.checkpoint(step)
    final, layers = jax.lax.scan(step, state, (jnp.arange(xs.shape[0]), xs), unroll=unroll)
    return layers[-1], layers, final


def sequence_loss(
    model,
    loss: AbstractLoss,
    xs,
    ys,
    window=None,
    checkpoint=False,
    schedule="step",
    unroll=1,
    mask=None,
):
    """Batch-mean loss of a batch and the outputs (batch, time, *out); `schedule` as
    in `simulate` (`"step"` whenever `window` is given); `mask` (batch, time) or None."""
    schedule = "step" if window is not None else resolve_schedule(model, schedule, "BPTT")

    def one(x, y, m):
        outputs, layers, _ = _unroll(model, x, window, checkpoint, schedule=schedule, unroll=unroll)
        layers = layers if loss.needs_layers else None
        return with_mask(loss, outputs, y, layers, mask=m), outputs

    losses, outputs = jax.vmap(one)(xs, ys, mask)
    return jnp.mean(losses), outputs


def segment_loss(model, loss: AbstractLoss, xs, ys, states, first=False, mask=None):
    """Batch-mean per-step loss of a segment started from (detached) batched `states`;
    returns `(loss, (outputs, final_states))`. The `first` segment starts from the
    model's initial state instead, keeping its gradient path to the parameters. With a
    `mask`, each sample's loss is the mean over its real steps in the segment (0 if
    none)."""

    def one(x, y, state, m):
        start = jtu.tree_map(
            lambda carried, h0: jnp.where(first, h0, jax.lax.stop_gradient(carried)),
            state,
            initial_state(model, x[0]),
        )
        outputs, _, final = _unroll(model, x, None, False, start)
        return with_mask(loss, outputs, y, mask=m), outputs, final

    losses, outputs, finals = jax.vmap(one)(xs, ys, states, mask)
    return jnp.mean(losses), (outputs, finals)


def offline_gradient(
    model, loss, xs, ys, window=None, checkpoint=False, schedule="step", unroll=1, mask=None
):
    params, static = eqx.partition(model, trainable_mask(model))

    def objective(params):
        model = eqx.combine(params, static)
        return sequence_loss(model, loss, xs, ys, window, checkpoint, schedule, unroll, mask)

    (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return grads, Aux(outputs=outputs, loss=value)


class BPTT(AbstractLearningRule):
    r"""Backpropagation through time with surrogate gradients: the exact gradient
    $\nabla_\theta \mathcal L$ of the unrolled computation, the reference every
    other rule is compared with. Memory $O(T)$ activations per sample.

    **Arguments:** `checkpoint`: rematerialise each step in the backward pass
    (`jax.checkpoint`), trading compute for memory. `schedule`: `"step"`
    (default), `"layerwise"` or `"auto"`, the order of the forward computation as in
    `simulate`; the gradient is the same for every schedule. `unroll`: steps per
    loop iteration, as in `simulate` (the gradient does not change).
    """

    checkpoint: bool = eqx.field(static=True, default=False)
    schedule: str = eqx.field(static=True, default="step")
    unroll: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(
                "BPTT: `schedule` must be one of 'step', 'layerwise', 'auto', "
                f"got {self.schedule!r}."
            )
        check_unroll(self.unroll, "BPTT")

    def update(self, model, rule_state, loss, xs, ys, mask=None):
        grads, aux = offline_gradient(
            model,
            loss,
            xs,
            ys,
            checkpoint=self.checkpoint,
            schedule=self.schedule,
            unroll=self.unroll,
            mask=mask,
        )
        return grads, rule_state, aux


class TruncatedBPTT(AbstractLearningRule):
    r"""BPTT with the carried state detached every `window` steps (TBPTT(k, k)).

    $$
    g = \sum_{w} \nabla_\theta \mathcal L_w\big|_{h_{wk}\ \text{constant}}
    $$

    where $\mathcal L_w$ holds the loss terms of window $w$. Needs a
    per-step loss, since an accumulated loss spans every window. `window = T` is
    exactly BPTT; `window = 1` keeps only the instantaneous gradient. The initial state
    $h_0(\theta)$ is not a window boundary: its dependence on the parameters (e.g.
    `Izhikevich(train_parameters=True)` starts at $v_0 = c, u_0 = bc$) reaches
    the first window's gradient, as in BPTT and RTRL.
    """

    window: int = eqx.field(static=True)
    checkpoint: bool = eqx.field(static=True, default=False)

    def __init__(self, window: int, *, checkpoint: bool = False):
        (self.window,) = shape_tuple(window, "window", "TruncatedBPTT")
        self.checkpoint = checkpoint

    def update(self, model, rule_state, loss, xs, ys, mask=None):
        if not loss.per_step:
            raise ValueError(
                f"TruncatedBPTT: needs a per-step loss (PerStep), got {type(loss).__name__}."
            )
        grads, aux = offline_gradient(
            model, loss, xs, ys, window=self.window, checkpoint=self.checkpoint, mask=mask
        )
        return grads, rule_state, aux
