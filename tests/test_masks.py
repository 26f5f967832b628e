r"""Variable-length sequences: a padded batch with its mask gives exactly what its samples
give one by one at their own lengths (float64, rtol 1e-10), for every rule and loss:

$$
g(\text{padded}, m) = \frac1B \sum_b g(x^{(b)}_{1..T_b}), \qquad
\mathcal L = \frac1B \sum_b \frac{1}{T_b}\sum_t m_{b,t}\,\ell_{b,t}.
$$

The padded steps hold garbage (random spikes), so these equalities fail without the mask."""

import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose, random_spikes, tree_allclose

import eqslax
from eqslax.data import pad_sequences

LENGTHS = (3, 5, 4)
STEPS, N_IN = 6, 3
MSE = eqslax.PerStep(lambda y, c: 0.5 * jnp.sum((y - c) ** 2), target="value")

RULES = {
    "BPTT": eqslax.BPTT(),
    "BPTT-layerwise": eqslax.BPTT(schedule="layerwise"),
    "TruncatedBPTT": eqslax.TruncatedBPTT(2),
    "RTRL": eqslax.RTRL(),
    "SnAp-1": eqslax.RTRL(snap=1),
    "UORO": eqslax.UORO(),
    "OSTL": eqslax.OSTL(),
    "OSTTP": eqslax.OSTTP(key=jax.random.key(0)),
    "OTTT": eqslax.OTTT(),
    "OTPE": eqslax.OTPE(),
    "ApproxOTPE": eqslax.ApproxOTPE(),
    "EProp": eqslax.EProp(),
}
OFFLINE_LOSSES = {
    "PerStep": eqslax.PerStep(),
    "sum": eqslax.Accumulated(reduce="sum"),
    "mean": eqslax.Accumulated(reduce="mean"),
    "max": eqslax.Accumulated(reduce="max"),
    "CountMSE": eqslax.Accumulated(eqslax.CountMSE(), "sum"),
}


def model():
    k = jax.random.split(jax.random.key(0), 2)
    layers = [
        eqx.nn.Linear(N_IN, 4, key=k[0]),
        eqslax.LIF(4, detach_reset=True, train_decay=True),
        eqx.nn.Linear(4, 2, key=k[1]),
        eqslax.LI(2, 0.6),
    ]
    return eqslax.Connect(layers)


def problem(per_step_values=False):
    """Samples of lengths `LENGTHS`, padded to `STEPS` with random spikes (garbage)."""
    k = jax.random.split(jax.random.key(1), 2)
    garbage = random_spikes(k[0], (len(LENGTHS), STEPS, N_IN), 0.5)
    samples = [garbage[b, :n] for b, n in enumerate(LENGTHS)]
    xs, mask = pad_sequences(samples, STEPS)
    assert np.array_equal(mask, np.arange(STEPS) < np.array(LENGTHS)[:, None])
    xs = jnp.where(jnp.asarray(mask)[..., None], xs, garbage)
    if per_step_values:
        ys = jax.random.normal(k[1], (len(LENGTHS), STEPS, 2))
        return xs, ys, jnp.asarray(mask), samples, [ys[b, :n] for b, n in enumerate(LENGTHS)]
    ys = jnp.array([0, 1, 1])
    return xs, ys, jnp.asarray(mask), samples, list(ys)


def one_by_one(grad, samples, targets):
    """The mean over samples of `grad(xs (1, T_b, in), ys (1, ...))`."""
    grads = [grad(x[None], jnp.asarray(y)[None]) for x, y in zip(samples, targets)]
    return jax.tree_util.tree_map(lambda *g: sum(g) / len(g), *grads)


@pytest.mark.parametrize("per_step_values", [False, True], ids=["label", "per-step-values"])
@pytest.mark.parametrize("name", list(RULES))
def test_padded_batch_is_the_samples_one_by_one(name, per_step_values):
    rule, net = RULES[name], model()
    loss = MSE if per_step_values else eqslax.PerStep()
    xs, ys, mask, samples, targets = problem(per_step_values)
    padded, _, aux = eqx.filter_jit(rule.update)(net, rule.init(net), loss, xs, ys, mask=mask)
    expected = one_by_one(lambda x, y: rule.grad(net, loss, x, y), samples, targets)
    assert_tree_allclose(padded, expected)
    # The loss each rule reports is the padded batch's L, with per-sample lengths.
    values = [loss(eqslax.simulate(net, x)[1], y) for x, y in zip(samples, targets)]
    assert jnp.allclose(aux.loss, jnp.mean(jnp.stack(values)), rtol=1e-10)
    if not per_step_values:  # the mask matters: the padded steps hold garbage
        assert not tree_allclose(padded, rule.grad(net, loss, xs, ys))


@pytest.mark.parametrize("name", list(OFFLINE_LOSSES))
def test_bptt_accumulated_losses(name):
    loss, net, rule = OFFLINE_LOSSES[name], model(), eqslax.BPTT()
    xs, ys, mask, samples, targets = problem()
    padded = rule.grad(net, loss, xs, ys, mask=mask)
    assert_tree_allclose(
        padded, one_by_one(lambda x, y: rule.grad(net, loss, x, y), samples, targets)
    )
    for b, (x, y) in enumerate(zip(samples, targets)):
        outputs = eqslax.simulate(net, xs[b])[1]
        assert jnp.allclose(loss(outputs, y, mask=mask[b]), loss(outputs[: len(x)], y), rtol=1e-12)
        assert loss.predict(outputs, mask[b]) == loss.predict(outputs[: len(x)])


def test_rate_regulariser_counts_real_steps_only():
    net = model()
    loss = eqslax.RateRegularised(eqslax.PerStep(), eqslax.spiking_layers(net), strength=1.0)
    xs, ys, mask, samples, targets = problem()
    rule = eqslax.BPTT()
    padded = rule.grad(net, loss, xs, ys, mask=mask)
    assert_tree_allclose(
        padded, one_by_one(lambda x, y: rule.grad(net, loss, x, y), samples, targets)
    )


def test_stdp_ignores_padded_steps():
    net = eqslax.Connect([eqx.nn.Linear(N_IN, 4, key=jax.random.key(3)), eqslax.LIF(4)])
    xs, ys, mask, samples, targets = problem()
    ys = ys % 4
    for rule in (eqslax.STDP(), eqslax.RewardSTDP()):
        update = eqx.filter_jit(rule.update)
        padded, _, _ = update(net, rule.init(net), eqslax.PerStep(), xs, ys, mask=mask)

        def grad(x, y, rule=rule, update=update):
            return update(net, rule.init(net), eqslax.PerStep(), x, y)[0]

        assert_tree_allclose(padded, one_by_one(grad, samples, list(ys)))


def single():
    """One sample of length 4, and the same padded to 6 with garbage and a mask."""
    xs, ys, mask, _, _ = problem(per_step_values=True)
    return xs[1:2, :4], ys[1:2, :4], xs[1:2], ys[1:2], jnp.arange(STEPS)[None] < 4


@pytest.mark.parametrize(
    "make",
    [
        lambda net: eqslax.train_offline(net, MSE, optax.adam(1e-2)),
        lambda net: eqslax.train_online(net, eqslax.OSTL(), MSE, optax.adam(1e-2)),
        lambda net: eqslax.train_online(net, eqslax.OTTT(), MSE, optax.adam(1e-2)),
        lambda net: eqslax.train_online_deferred(net, eqslax.OTPE(), MSE, optax.adam(1e-2)),
    ],
    ids=["offline", "online-OSTL", "online-OTTT", "deferred-OTPE"],
)
def test_training_step_on_a_padded_sample_is_the_sample(make):
    """Adam after every step: a padded step must not touch the optimiser at all."""
    net = model()
    step = make(net)
    x, y, padded_x, padded_y, mask = single()
    expected = step(net, step.init(net), x, y)
    got = step(net, step.init(net), padded_x, padded_y, mask)
    assert_tree_allclose(eqx.filter(got[:2], eqx.is_array), eqx.filter(expected[:2], eqx.is_array))
    assert jnp.allclose(got[3], expected[3], rtol=1e-10)
    assert not tree_allclose(step(net, step.init(net), padded_x, padded_y)[0], expected[0])


@pytest.mark.parametrize("rule", [None, eqslax.OSTL()], ids=["BPTT", "OSTL"])
def test_fptt_skips_padded_segments(rule):
    net = model()
    x, y, padded_x, padded_y, mask = single()
    fptt = dict(alpha=0.5, rule=rule)
    step = eqslax.train_fptt(net, eqslax.FPTT(2, **fptt), MSE, optax.adam(1e-2))
    padded_step = eqslax.train_fptt(net, eqslax.FPTT(3, **fptt), MSE, optax.adam(1e-2))
    expected = step(net, step.init(net), x, y)
    got = padded_step(net, padded_step.init(net), padded_x, padded_y, mask)
    assert_tree_allclose(eqx.filter(got[:2], eqx.is_array), eqx.filter(expected[:2], eqx.is_array))


def test_mask_errors_name_the_argument():
    net, rule = model(), eqslax.BPTT()
    xs, ys, mask, _, _ = problem()
    step = eqslax.train_offline(net, eqslax.PerStep(), optax.sgd(0.1))
    # jaxtyping's hook (on in the suite) or the library's own check: both name `mask`;
    # the library's messages are checked without the hook below.
    with pytest.raises((ValueError, TypeError), match="mask"):
        step(net, step.init(net), xs, ys, mask[:, :5])
    with pytest.raises((ValueError, TypeError), match="mask"):
        rule.grad(net, eqslax.PerStep(), xs, ys, mask=mask.astype(float))
    with pytest.raises(ValueError, match="`mask` must mark at least one real step.*sample 1"):
        rule.grad(net, eqslax.PerStep(), xs, ys, mask=mask.at[1].set(False))


_WITHOUT_HOOK = """
import jax, jax.numpy as jnp, optax
import eqslax

def scan(*args, **kwargs):
    raise AssertionError("scan reached")

net = eqslax.feedforward((3, 4, 2), key=jax.random.key(0))
xs, ys, mask = jnp.zeros((2, 6, 3)), jnp.array([0, 1]), jnp.ones((2, 6), bool)
step = eqslax.train_offline(net, eqslax.PerStep(), optax.sgd(0.1))
state = step.init(net)
jax.lax.scan = scan
cases = {
    "shape": mask[:, :5],
    "dtype": mask.astype(jnp.float32),
    "type": [[True] * 6] * 2,
    "empty": mask.at[1].set(False),
}
for name, bad in cases.items():
    try:
        step(net, state, xs, ys, bad)
    except (TypeError, ValueError) as error:
        print(f"{name}|{type(error).__name__}|{error}")
"""


def test_mask_messages_without_the_typecheck_hook():
    """What users see, before any work: the library's own checks, not jaxtyping's."""
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HOOK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=pathlib.Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("|", 1) for line in result.stdout.strip().splitlines())
    assert lines == {
        "shape": "ValueError|OfflineStep: `mask` must have shape (2, 6) like the inputs' "
        "leading axes (True = real step), got (2, 5).",
        "dtype": "TypeError|OfflineStep: `mask` must have dtype bool (True = real step), got "
        "float32; eqslax.data.pad_sequences returns one.",
        "type": "TypeError|OfflineStep: `mask` must be a boolean array of shape (2, 6) (True "
        "= real step), got list.",
        "empty": "ValueError|OfflineStep: `mask` must mark at least one real step (True) per "
        "sample, got none for sample 1.",
    }


class NoMaskBPTT(eqslax.AbstractLearningRule):
    """A user's rule written before masks existed."""

    def update(self, model, rule_state, loss, xs, ys):
        return eqslax.BPTT().update(model, rule_state, loss, xs, ys)


def test_a_rule_without_mask_runs_unpadded_and_refuses_a_mask():
    net = model()
    xs, ys, mask, _, _ = problem()
    step = eqslax.train_offline(net, eqslax.PerStep(), optax.sgd(0.1), rule=NoMaskBPTT())
    step(net, step.init(net), xs, ys)
    with pytest.raises(TypeError, match="NoMaskBPTT.update takes no `mask`"):
        step(net, step.init(net), xs, ys, mask)


def test_pad_sequences():
    samples = [np.ones((2, 3)), 2 * np.ones((5, 3))]
    xs, mask = pad_sequences(samples, buckets=(4, 8, 16), value=-1.0)
    assert xs.shape == (2, 8, 3) and mask.dtype == bool
    assert mask.sum(1).tolist() == [2, 5]
    assert np.all(xs[0, 2:] == -1.0) and np.all(xs[1, :5] == 2.0)
    assert pad_sequences(samples)[0].shape == (2, 5, 3)
    with pytest.raises(ValueError, match="`length` must be at least the longest.*5.*got 4"):
        pad_sequences(samples, 4)
    with pytest.raises(ValueError, match="largest of `buckets`"):
        pad_sequences(samples, buckets=(2, 4))
    with pytest.raises(ValueError, match="trailing shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


class Unpadded(eqslax.data.AbstractLoader):
    """Samples one at a time at their own lengths, in `ArrayLoader`'s order."""

    def __init__(self, samples, labels):
        self.samples, self.labels = samples, labels
        self.n_samples, self.batch_size = len(samples), 1

    def batch(self, key, index, *, drop_last=True):
        order = np.arange(self.n_samples) if key is None else jax.random.permutation(key, 3)
        i = int(order[index])
        return self.samples[i][None], jnp.asarray(self.labels[i])[None]


@pytest.mark.parametrize("loss", [eqslax.PerStep(), eqslax.Accumulated(reduce="max")])
def test_fit_and_evaluate_with_masked_batches(loss):
    """`fit` on padded batches of one with their masks is `fit` on the samples
    themselves: the same model, losses and accuracies."""
    net = model()
    xs, ys, mask, samples, targets = problem()
    step = eqslax.train_offline(net, loss, optax.adam(1e-2))
    options = dict(epochs=2, key=jax.random.key(4), progress=False)
    padded = eqslax.data.Loaders(
        eqslax.data.ArrayLoader(xs, ys, 1, mask=mask),
        eqslax.data.ArrayLoader(xs, ys, 2, mask=mask),
    )
    got, history = eqslax.fit(net, step, padded, **options)
    unpadded = eqslax.data.Loaders(Unpadded(samples, targets), Unpadded(samples, targets))
    expected, reference = eqslax.fit(net, step, unpadded, **options)
    assert_tree_allclose(eqx.filter(got, eqx.is_array), eqx.filter(expected, eqx.is_array))
    for name in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert np.allclose(history[name], reference[name], rtol=1e-10), name
    assert eqslax.evaluate(got, loss, xs, ys, mask=mask) == pytest.approx(
        eqslax.evaluate(got, loss, unpadded.test), rel=1e-10
    )


def test_task_metrics_count_real_steps_only():
    net = model()
    xs, ys, mask, samples, targets = problem(per_step_values=True)
    outputs = jax.vmap(lambda x: eqslax.simulate(net, x)[1])(xs)
    real_outputs = jnp.concatenate([o[: len(x)] for o, x in zip(outputs, samples)])
    got = eqslax.task_metrics(MSE, outputs, ys, mask)
    expected = eqslax.task_metrics(MSE, real_outputs[None], jnp.concatenate(targets)[None])
    assert got == pytest.approx(expected, rel=1e-12)
    labels = jnp.zeros(mask.shape, int).at[:, -1].set(1)  # padded steps labelled 1
    steps = eqslax.task_metrics(eqslax.PerStep(), outputs, labels, mask)
    real = jnp.argmax(real_outputs, -1) == 0
    assert steps["accuracy"] == pytest.approx(float(jnp.mean(real)), rel=1e-12)
    assert eqslax.accuracy(eqslax.PerStep(), outputs, labels, mask) == pytest.approx(
        steps["accuracy"], rel=1e-12
    )
    classes = jnp.array([0, 1, 1])
    per_sequence = [eqslax.PerStep().predict(o[: len(x)]) for o, x in zip(outputs, samples)]
    assert eqslax.accuracy(eqslax.PerStep(), outputs, classes, mask) == pytest.approx(
        float(jnp.mean(jnp.stack(per_sequence) == classes)), rel=1e-12
    )
