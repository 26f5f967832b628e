"""Forward propagation through time (Kag & Saligrama 2021)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jaxtyping import PyTree

from .._finite import any_nonfinite
from .._losses import AbstractLoss
from .._mask import time_mean
from .._neurons import AbstractNeuron
from .._parameters import trainable_mask
from .._precision import check_training_precision
from .._simulate import check_model, initial_state
from .._step import AbstractTrainStep, TrainState, check_optimizer
from ._bptt import segment_loss
from ._online import AbstractOnlineRule, check_per_step, keep_real


class FPTTState(eqx.Module):
    r"""FPTT's memory of past gradients $\lambda$ and running average
    $\bar W$, both shaped like the trainable parameters."""

    multiplier: PyTree
    average: PyTree


class FPTT(eqx.Module):
    r"""FPTT's hyperparameters; train with `train_fptt`.

    The sequence is cut into `segments` $K$ of equal length. At segment
    $t$ the carried state is detached (the first segment starts from the initial
    state as a function of the parameters, as BPTT does), the segment loss $\ell_t(W)$ (the
    per-step loss averaged over the segment's steps and the batch) is augmented by the
    dynamic regulariser whose gradient is

    $$
    \nabla R_t = \alpha (W - \bar W_t) - c\,\lambda_t
    $$

    and the optimiser takes one step to $W_{t+1}$. Then, with the *post-update*
    parameters (as in the paper, unlike Slax),

    $$
    \lambda_{t+1} = \lambda_t - \alpha (W_{t+1} - \bar W_t), \qquad
    \bar W_{t+1} = \tfrac12(\bar W_t + W_{t+1}) - \tfrac{1}{2\alpha}\lambda_{t+1}
    $$

    **Arguments:**

    - `segments`: $K$; `K = T` is fully online (one-step truncation).
    - `alpha`: $\alpha$ (default 0.5, Slax; the authors' code uses 0.1).
    - `multiplier_coefficient`: $c$. The paper's regulariser
      $\frac\alpha2\lVert W - \bar W - \frac{\lambda}{2\alpha}\rVert^2$ gives
      $c = 1/2$ (default); the authors' code ($-\langle W,\lambda\rangle +
      \frac\alpha2\lVert W-\bar W\rVert^2$) gives $c = 1$.
    - `rule`: `None` for BPTT within each segment, or an online rule whose traces
      carry across segments while its summed step gradients replace the segment BPTT.
    - `reset_each_batch`: restart $\lambda = 0$, $\bar W = W$ at every batch
      (Slax) instead of keeping them across batches (the authors' code, default).

    With a `mask`, each sample's segment loss is the mean over its real steps in the
    segment (0 when it has none), and a segment in which every sample is padded takes no
    step: $W$, $\lambda$, $\bar W$ and the optimiser state stay as they are.
    """

    segments: int = eqx.field(static=True)
    alpha: float = 0.5
    multiplier_coefficient: float = 0.5
    rule: AbstractOnlineRule | None = None
    reset_each_batch: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.segments, int) or self.segments <= 0:
            raise ValueError(f"FPTT: `segments` must be a positive int, got {self.segments!r}.")
        if not self.alpha > 0:
            raise ValueError(f"FPTT: `alpha` must be > 0, got {self.alpha!r}.")

    def init(self, model: AbstractNeuron) -> FPTTState:
        params = eqx.filter(model, trainable_mask(model))
        return FPTTState(multiplier=jtu.tree_map(jnp.zeros_like, params), average=params)

    def regulariser_grad(self, params, state: FPTTState):
        return jtu.tree_map(
            lambda w, wbar, lam: self.alpha * (w - wbar) - self.multiplier_coefficient * lam,
            params,
            state.average,
            state.multiplier,
        )

    def advance(self, new_params, state: FPTTState) -> FPTTState:
        multiplier = jtu.tree_map(
            lambda lam, w, wbar: lam - self.alpha * (w - wbar),
            state.multiplier,
            new_params,
            state.average,
        )
        average = jtu.tree_map(
            lambda wbar, w, lam: 0.5 * (wbar + w) - lam / (2 * self.alpha),
            state.average,
            new_params,
            multiplier,
        )
        return FPTTState(multiplier=multiplier, average=average)


class FPTTStep(AbstractTrainStep):
    """A training step `(model, state, xs, ys) -> (model, state, outputs, loss)` that
    takes one FPTT update per segment. Built by `train_fptt`."""

    fptt: FPTT
    loss: AbstractLoss
    optimizer: optax.GradientTransformation

    def init_rule(self, model):
        return self.fptt.init(model)

    def run(self, model, state, xs, ys, mask=None):
        return _fptt_step(self, model, state, xs, ys, mask)

    def check(self, xs):
        if xs.shape[1] % self.fptt.segments:
            raise ValueError(
                f"FPTT: the sequence length {xs.shape[1]} must be a multiple of `segments` "
                f"= {self.fptt.segments}."
            )


def _segment_gradient(fptt, loss, model, params, static, carry_states, traces, xs, ys, first, mask):
    """Gradient of one segment's loss, its outputs, and the carried states/traces.

    The `first` segment starts from the initial state as a function of the parameters.
    """
    if fptt.rule is None:

        def objective(params):
            model = eqx.combine(params, static)
            return segment_loss(model, loss, xs, ys, carry_states, first, mask)

        (value, (outputs, states)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, value, outputs, states, traces

    rule = fptt.rule

    def one(states, traces, x, label, m):
        def body(carry, inputs):
            s, tr, total = carry
            t, x_t = inputs
            s, tr, g, y, v = rule.step(model, s, tr, x_t, loss.target_at(label, t), loss)
            g, v = keep_real((g, v), None if m is None else m[t])
            return (s, tr, jtu.tree_map(jnp.add, total, g)), (y, v)

        zero = jtu.tree_map(jnp.zeros_like, params)
        steps = (jnp.arange(x.shape[0]), x)
        (s, tr, total), (ys_, values) = jax.lax.scan(body, (states, traces, zero), steps)
        length = x.shape[0] if m is None else jnp.maximum(jnp.sum(m), 1)
        return s, tr, jtu.tree_map(lambda g: g / length, total), ys_, time_mean(values, m)

    states, traces, means, outputs, values = jax.vmap(one)(carry_states, traces, xs, ys, mask)
    grads = jtu.tree_map(lambda g: jnp.mean(g, 0), means)
    return grads, jnp.mean(values), outputs, states, traces


def _segments(array, segments: int):
    """`(batch, time, ...)` to `(segments, batch, time / segments, ...)`."""
    batch, steps = array.shape[:2]
    cut = array.reshape(batch, segments, steps // segments, *array.shape[2:])
    return jnp.moveaxis(cut, 1, 0)


@eqx.filter_jit
def _fptt_step(step: FPTTStep, model, state, xs, ys, mask):
    fptt, loss = step.fptt, step.loss
    params, static = eqx.partition(model, trainable_mask(model))
    memory = fptt.init(model) if fptt.reset_each_batch else state.rule
    if fptt.rule is None:
        states = jax.vmap(lambda x: initial_state(model, x[0]))(xs)
        traces = None
    else:
        states, traces = jax.vmap(lambda x: fptt.rule.start(model, x[0]))(xs)
    batch, steps = xs.shape[:2]
    segments = _segments(xs, fptt.segments)
    # Per-step targets (batch, time, ...) are cut like the inputs; one label per
    # sequence is the same in every segment.
    targets = _segments(ys, fptt.segments) if ys.ndim > 1 else None
    masks = None if mask is None else _segments(mask, fptt.segments)

    def body(carry, inputs):
        params, opt_state, memory, states, traces, bad = carry
        index, segment, target, real = inputs
        target = ys if target is None else target
        current = eqx.combine(params, static)
        grads, value, outputs, states, traces = _segment_gradient(
            fptt, loss, current, params, static, states, traces, segment, target, index == 0, real
        )
        grads = jtu.tree_map(jnp.add, grads, fptt.regulariser_grad(params, memory))
        updates, new_opt_state = step.optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        new = (new_params, new_opt_state, fptt.advance(new_params, memory))
        if real is not None:  # a segment no sample reaches takes no step
            new = jtu.tree_map(
                lambda a, b: jnp.where(jnp.any(real), a, b), new, (params, opt_state, memory)
            )
        params, opt_state, memory = new
        bad = bad | any_nonfinite(grads)
        return (params, opt_state, memory, states, traces, bad), (outputs, value)

    carry = (params, state.optimizer, memory, states, traces, jnp.asarray(False))
    scanned = (jnp.arange(fptt.segments), segments, targets, masks)
    (params, opt_state, memory, _, _, bad), (outputs, values) = jax.lax.scan(body, carry, scanned)
    outputs = jnp.moveaxis(outputs, 0, 1).reshape(batch, steps, *outputs.shape[3:])
    model = eqx.combine(params, static)
    bad = bad | any_nonfinite(params)
    return model, TrainState(opt_state, memory, bad), outputs, jnp.mean(values)


def train_fptt(
    model: AbstractNeuron,
    fptt: FPTT,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
) -> FPTTStep:
    """A jitted FPTT training step with the usual signature; see `FPTT`."""
    check_model(model, "train_fptt")
    check_optimizer(optimizer, "train_fptt")
    check_training_precision(model, "train_fptt")
    if not isinstance(fptt, FPTT):
        raise TypeError(f"train_fptt: `fptt` must be an FPTT(...), got {type(fptt).__name__}.")
    check_per_step(loss, "train_fptt")
    if fptt.rule is not None and not isinstance(fptt.rule, AbstractOnlineRule):
        raise TypeError(
            f"train_fptt: `fptt.rule` must be None (BPTT within segments) or an online rule "
            f"object such as eqslax.OSTL(), got {fptt.rule!r} ({type(fptt.rule).__name__})."
        )
    if fptt.rule is not None:
        fptt.rule.init_traces(model, model.init_state())
    return FPTTStep(fptt=fptt, loss=loss, optimizer=optimizer)
