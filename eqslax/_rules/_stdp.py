r"""Spike-timing-dependent plasticity: pair-based STDP and reward-modulated STDP.

Both rules change only the weights of the `eqx.nn.Linear` layers of a
`Connect([Linear, neuron, Linear, neuron, ...])`, from recorded spikes: for layer
$l$, the presynaptic spikes are the layer's input and the postsynaptic spikes the
output of the neuron after it.

**Sign convention.** A learning rule returns "gradients" that an optimiser *subtracts*.
These rules are not gradient descent, so `update` returns the **negated weight
change** $-\Delta W$ (zero for every other leaf): `optax.sgd(1.0)` then applies
exactly $W \leftarrow W + \Delta W$:

```python
step = eqslax.train_offline(model, eqslax.PerStep(), optax.sgd(1.0), rule=STDP())
```

Any other optimiser rescales or reshapes the change. The loss is used only to report
`aux.loss`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import check_choice
from .._mask import with_mask
from .._neurons import AbstractNeuron
from .._neurons._base import as_float
from .._parameters import trainable
from .._simulate import record
from ._base import AbstractLearningRule, Aux
from ._layers import Layers

BOUNDS = ("additive", "multiplicative", "none")


def pair_eligibility(
    pre: Float[Array, "time n_in"],
    post: Float[Array, "time n"],
    pre_decay: Float[ArrayLike, ""],
    post_decay: Float[ArrayLike, ""],
    eligibility_decay: Float[ArrayLike, ""],
    mask: Bool[Array, " time"] | None = None,
) -> tuple[Float[Array, "n n_in"], Float[Array, "n n_in"]]:
    r"""Summed potentiation and depression eligibilities of one sample.

    With traces decayed *before* this step's spikes are added (so equal-time pairs
    contribute nothing), $\tilde x = \lambda_+ x$, $\tilde y = \lambda_- y$:

    $$
    p_t = s^{post}_t \otimes \tilde x_t, \quad d_t = \tilde y_t \otimes s^{pre}_t,
    \quad x \leftarrow \tilde x + s^{pre}_t, \quad y \leftarrow \tilde y + s^{post}_t
    $$

    and eligibilities $e^p_t = \lambda_e e^p_{t-1} + p_t$ (likewise $e^d$).
    Returns $(\sum_t e^p_t, \sum_t e^d_t)$; with $\lambda_e = 0$ these are
    the all-to-all pair sums $\sum_{t_{pre} < t_{post}} \lambda_+^{t_{post} - t_{pre}}$
    and $\sum_{t_{post} < t_{pre}} \lambda_-^{t_{pre} - t_{post}}$. With a `mask`
    $m_t$ (True = real step) the sums keep the real steps only, $\sum_t m_t e_t$.
    """

    def step(carry, spikes):
        x, y, e_p, e_d, sum_p, sum_d = carry
        s_pre, s_post, real = spikes
        x, y = pre_decay * x, post_decay * y
        e_p = eligibility_decay * e_p + jnp.outer(s_post, x)
        e_d = eligibility_decay * e_d + jnp.outer(y, s_pre)
        sum_p, sum_d = sum_p + jnp.where(real, e_p, 0), sum_d + jnp.where(real, e_d, 0)
        return (x + s_pre, y + s_post, e_p, e_d, sum_p, sum_d), None

    zeros = jnp.zeros((post.shape[1], pre.shape[1]), jnp.result_type(pre, post))
    init = (jnp.zeros_like(pre[0]), jnp.zeros_like(post[0]), zeros, zeros, zeros, zeros)
    real = jnp.ones(pre.shape[0], bool) if mask is None else mask
    (_, _, _, _, sum_p, sum_d), _ = jax.lax.scan(step, init, (pre, post, real))
    return sum_p, sum_d


def layer_spikes(model, loss, xs, ys, owner, mask=None):
    """Record the batch; return `[(linear index, pre, post)]` (each (batch, time, .))
    and the `Aux` (outputs, batch-mean loss over the real steps of `mask`)."""
    view = Layers(model, owner)
    for index, layer in enumerate(view):
        if layer.recurrent is not None:
            raise ValueError(
                f"{owner}: {view.name(index)} is recurrent; pair-based STDP here learns "
                f"feed-forward weights only. Use an elementwise neuron."
            )
    recording = jax.vmap(lambda x: record(model, x)[1])(xs)
    layers = recording.layers
    spikes = [
        (
            layer.position - 1,
            xs if index == 0 else layers[view[index - 1].position],
            layers[layer.position],
        )
        for index, layer in enumerate(view)
    ]
    needs = loss.needs_layers

    def one(outputs, label, layers, m):
        return with_mask(loss, outputs, label, layers if needs else None, mask=m)

    value = jnp.mean(jax.vmap(one)(recording.outputs, ys, layers, mask))
    return spikes, Aux(outputs=recording.outputs, loss=value)


def as_updates(model, changes: dict[int, Array]):
    """A tree like `trainable(model)`: $-\\Delta W$ on the listed Linear weights,
    zero elsewhere."""
    grads = jtu.tree_map(jnp.zeros_like, trainable(model))
    for index, change in changes.items():
        grads = eqx.tree_at(lambda g, index=index: g.layers[index].weight, grads, -change)
    return grads


class STDP(AbstractLearningRule):
    r"""Pair-based, all-to-all STDP with trace variables (Song, Miller & Abbott 2000).

    For a presynaptic spike at $t_{pre}$ and a postsynaptic one at
    $t_{post}$, $\Delta = t_{post} - t_{pre}$ steps, the window is
    $A_+\lambda_+^{\Delta}$ for $\Delta > 0$, $-A_-\lambda_-^{|\Delta|}$
    for $\Delta < 0$ and **0 for equal-time pairs**. Summed over all pairs with
    the traces of `pair_eligibility` ($P = \sum_t s^{post}_t \otimes
    \lambda_+ x_{t-1}$, $D = \sum_t \lambda_- y_{t-1} \otimes s^{pre}_t$), the
    change per sample is

    - `"additive"`: $\Delta W = A_+ P - A_- D$, then $W + \Delta W$ is
      clipped to $[w_{min}, w_{max}]$;
    - `"multiplicative"` (soft bounds): $\Delta W = A_+(w_{max} - W)\odot P -
      A_-(W - w_{min})\odot D$;
    - `"none"`: $A_+ P - A_- D$.

    The change is averaged over the batch (not divided by the number of steps), with
    the weights held fixed during the batch; `update` returns $-\Delta W$ (see
    the module docstring: use `optax.sgd(1.0)`).
    """

    potentiation: Float[Array, ""]
    depression: Float[Array, ""]
    pre_decay: Float[Array, ""]
    post_decay: Float[Array, ""]
    minimum: Float[Array, ""]
    maximum: Float[Array, ""]
    bounds: str = eqx.field(static=True)

    def __init__(
        self,
        potentiation: float | Float[ArrayLike, ""] = 0.01,
        depression: float | Float[ArrayLike, ""] = 0.0105,
        pre_decay: float | Float[ArrayLike, ""] = 0.951229424500714,
        post_decay: float | Float[ArrayLike, ""] = 0.951229424500714,
        *,
        bounds: str = "additive",
        minimum: float | Float[ArrayLike, ""] = 0.0,
        maximum: float | Float[ArrayLike, ""] = 1.0,
    ):
        """**Arguments:**

        - `potentiation`, `depression`: amplitudes $A_+, A_- \\ge 0$ (defaults
          0.01 and 0.0105, depression slightly stronger as in Song et al.).
        - `pre_decay`, `post_decay`: per-step trace decays $\\lambda_\\pm =
          e^{-1/\\tau_\\pm} \\in [0, 1]$ (default $\\tau_\\pm = 20$ steps).
        - `bounds`: `"additive"` (default), `"multiplicative"` or `"none"`.
        - `minimum`, `maximum`: $w_{min} < w_{max}$ (default 0 and 1: excitatory
          synapses; a first additive update clips weights outside this range).
        """
        owner = "STDP"
        self.potentiation = as_float(potentiation, "potentiation", owner, 0)
        self.depression = as_float(depression, "depression", owner, 0)
        self.pre_decay = as_float(pre_decay, "pre_decay", owner, 0, 1)
        self.post_decay = as_float(post_decay, "post_decay", owner, 0, 1)
        self.bounds = check_choice(bounds, "bounds", BOUNDS, owner)
        self.minimum = as_float(minimum, "minimum", owner, allow_inf=True)
        self.maximum = as_float(maximum, "maximum", owner, allow_inf=True)
        for name in ("potentiation", "depression", "pre_decay", "post_decay", "minimum", "maximum"):
            if getattr(self, name).shape != ():
                raise ValueError(
                    f"STDP: `{name}` must be a scalar, got shape {getattr(self, name).shape}."
                )
        if not isinstance(self.minimum, jax.core.Tracer) and not bool(self.minimum < self.maximum):
            raise ValueError(
                f"STDP: `minimum` must be below `maximum`, got minimum={minimum!r}, "
                f"maximum={maximum!r}."
            )

    def eligibility(
        self,
        pre: Float[Array, "time n_in"],
        post: Float[Array, "time n"],
        eligibility_decay: Float[ArrayLike, ""] = 0.0,
        mask: Bool[Array, " time"] | None = None,
    ) -> tuple[Float[Array, "n n_in"], Float[Array, "n n_in"]]:
        """`pair_eligibility` of one sample with this rule's trace decays."""
        return pair_eligibility(pre, post, self.pre_decay, self.post_decay, eligibility_decay, mask)

    def weight_change(
        self, weight: Float[Array, "n n_in"], potentiation: Array, depression: Array
    ) -> Float[Array, "n n_in"]:
        r"""$\Delta W$ from the summed terms $P, D$, with the weight bounds."""
        if self.bounds == "multiplicative":
            up = self.potentiation * (self.maximum - weight) * potentiation
            return up - self.depression * (weight - self.minimum) * depression
        change = self.potentiation * potentiation - self.depression * depression
        if self.bounds == "additive":
            change = jnp.clip(weight + change, self.minimum, self.maximum) - weight
        return change

    def update(
        self,
        model: AbstractNeuron,
        rule_state: None,
        loss,
        xs: Float[Array, "batch time *in"],
        ys: Int[Array, " batch"],
        mask: Bool[Array, "batch time"] | None = None,
    ):
        spikes, aux = layer_spikes(model, loss, xs, ys, "STDP", mask)
        changes = {}
        for index, pre, post in spikes:
            p, d = jax.vmap(lambda a, b, m: self.eligibility(a, b, mask=m))(pre, post, mask)
            weight = model.layers[index].weight
            changes[index] = self.weight_change(weight, jnp.mean(p, 0), jnp.mean(d, 0))
        return as_updates(model, changes), rule_state, aux


class RewardSTDPState(eqx.Module):
    """The running reward baseline $b$."""

    baseline: Float[Array, ""]


def spike_count_reward(outputs: Float[Array, "time out"], label: Int[Array, ""]) -> Array:
    """+1 if the class with the most output spikes is `label`, else -1."""
    correct = jnp.argmax(jnp.sum(outputs, axis=0)) == label
    return jnp.where(correct, 1.0, -1.0).astype(outputs.dtype)


class RewardSTDP(AbstractLearningRule):
    r"""Reward-modulated (three-factor) STDP: STDP pair terms gated by a reward.

    The pair terms of `stdp` feed eligibility traces, and a per-sample reward
    $R$ minus a running baseline $b$ gates the sequence's change (episodic
    form, the reward constant over the sample):

    $$
    e_t = \lambda_e e_{t-1} + \mathrm{STDP}_t, \qquad
    \Delta W = \eta\,\frac1B\sum_{b}(R_b - b)\sum_t e^{(b)}_t, \qquad
    b \leftarrow (1 - \nu)\,b + \nu\,\overline{R}
    $$

    with $\mathrm{STDP}_t = A_+ s^{post}_t \otimes \tilde x_t - A_- \tilde y_t
    \otimes s^{pre}_t$ and the weight bounds of `stdp` (clipping of the final
    $W + \Delta W$, or soft factors $w_{max} - W$ on the potentiation part
    and $W - w_{min}$ on the depression part). $b$ is the baseline before
    this batch; $\overline R$ the batch-mean reward. With $R - b \equiv 1$,
    $\eta = 1$ and $\lambda_e = 0$ this is `stdp`. `update` returns
    $-\Delta W$ (apply with `optax.sgd(1.0)`).
    """

    stdp: STDP
    reward: Callable[[Array, Array], Array]
    eligibility_decay: Float[Array, ""]
    learning_rate: Float[Array, ""]
    baseline_rate: Float[Array, ""]
    initial_baseline: Float[Array, ""]

    def __init__(
        self,
        stdp: STDP | None = None,
        *,
        reward: Callable[[Array, Array], Array] = spike_count_reward,
        eligibility_decay: float | Float[ArrayLike, ""] = 0.951229424500714,
        learning_rate: float | Float[ArrayLike, ""] = 1.0,
        baseline_rate: float | Float[ArrayLike, ""] = 0.1,
        initial_baseline: float | Float[ArrayLike, ""] = 0.0,
    ):
        """**Arguments:**

        - `stdp`: the pair rule, its amplitudes and bounds (default `STDP()`).
        - `reward`: `reward(outputs (time, *out), label) -> scalar` per sample
          (default: +1 if the most-spiking output is the label, else -1); with a
          `mask` the outputs it sees are zero at padded steps.
        - `eligibility_decay`: $\\lambda_e \\in [0, 1]$ (default
          $e^{-1/20}$).
        - `learning_rate`: $\\eta \\ge 0$ (default 1).
        - `baseline_rate`: $\\nu \\in [0, 1]$ of the running baseline (default 0.1).
        - `initial_baseline`: $b$ before the first batch (default 0).
        """
        owner = "RewardSTDP"
        stdp = STDP() if stdp is None else stdp
        if not isinstance(stdp, STDP):
            raise TypeError(
                f"{owner}: `stdp` must be an eqslax STDP rule, got {type(stdp).__name__}."
            )
        if not callable(reward):
            raise TypeError(f"{owner}: `reward` must be a function (outputs, label) -> scalar.")
        self.stdp = stdp
        self.reward = reward
        self.eligibility_decay = as_float(eligibility_decay, "eligibility_decay", owner, 0, 1)
        self.learning_rate = as_float(learning_rate, "learning_rate", owner, 0)
        self.baseline_rate = as_float(baseline_rate, "baseline_rate", owner, 0, 1)
        self.initial_baseline = as_float(initial_baseline, "initial_baseline", owner)

    def init(self, model: AbstractNeuron) -> RewardSTDPState:
        return RewardSTDPState(baseline=self.initial_baseline)

    def update(
        self,
        model: AbstractNeuron,
        rule_state: RewardSTDPState,
        loss,
        xs: Float[Array, "batch time *in"],
        ys: Int[Array, " batch"],
        mask: Bool[Array, "batch time"] | None = None,
    ):
        spikes, aux = layer_spikes(model, loss, xs, ys, "RewardSTDP", mask)
        outputs = aux.outputs
        if mask is not None:  # the reward sees no padded step
            outputs = jnp.where(mask.reshape(mask.shape + (1,) * (outputs.ndim - 2)), outputs, 0)
        rewards = jax.vmap(self.reward)(outputs, ys)
        if rewards.shape != ys.shape:
            raise ValueError(
                f"RewardSTDP: `reward` must return one scalar per sample, got shape "
                f"{rewards.shape[1:]} per sample."
            )
        modulation = self.learning_rate * (rewards - rule_state.baseline)
        changes = {}
        for index, pre, post in spikes:
            p, d = jax.vmap(lambda a, b, m: self.stdp.eligibility(a, b, self.eligibility_decay, m))(
                pre, post, mask
            )
            p = jnp.tensordot(modulation, p, axes=1) / xs.shape[0]
            d = jnp.tensordot(modulation, d, axes=1) / xs.shape[0]
            changes[index] = self.stdp.weight_change(model.layers[index].weight, p, d)
        rate = self.baseline_rate
        baseline = (1.0 - rate) * rule_state.baseline + rate * jnp.mean(rewards)
        return as_updates(model, changes), RewardSTDPState(baseline=baseline), aux
