"""Loss landscapes (Li et al. 2018), trajectory PCA and gradient comparison, each against
its definition computed independently here."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes
from jax.flatten_util import ravel_pytree

import eqslax
from eqslax._rules._bptt import sequence_loss
from eqslax.analysis import (
    GradientComparison,
    SimilarityRecorder,
    cosine_similarity,
    direction_between,
    flatten_params,
    gradient_similarity,
    loss_line,
    loss_surface,
    random_direction,
    trajectory_grid,
    trajectory_pca,
    unflatten_params,
)

KEY = jax.random.key(0)
SIZES = (4, 5, 3)
STEPS = 10
LOSS = eqslax.PerStep()


@pytest.fixture(scope="module")
def model():
    # Trained leaks make 0-d leaves part of the trainable tree, beside the 1-d biases.
    return feedforward(KEY, SIZES, train_decay=True)


@pytest.fixture(scope="module")
def batch():
    xs = random_spikes(jax.random.key(1), (6, STEPS, SIZES[0]))
    ys = jnp.arange(6) % SIZES[-1]
    return xs, ys


@pytest.fixture(scope="module")
def loss_of_model(batch):
    xs, ys = batch
    return eqx.filter_jit(lambda m: sequence_loss(m, LOSS, xs, ys)[0])


@eqx.filter_jit
def shifted(model, *terms):
    """θ + Σ c·d, written leaf by leaf with eqx.apply_updates."""
    coefficients = [c for c, _ in terms]
    update = jtu.tree_map(
        lambda *ds: sum(c * d for c, d in zip(coefficients, ds)), *[d for _, d in terms]
    )
    return eqx.apply_updates(model, update)


def flatten_params_of(tree):
    """A direction PyTree as one vector."""
    return np.asarray(ravel_pytree(tree)[0])


def row_norms(x):
    return np.linalg.norm(np.asarray(x).reshape(x.shape[0], -1), axis=1)


# Filter-normalised directions


def test_direction_rows_have_the_weight_norms(model):
    direction = random_direction(model, KEY)
    params = eqslax.trainable(model)
    assert jtu.tree_structure(direction) == jtu.tree_structure(params)
    leaves = jtu.tree_leaves_with_path(direction)
    assert {x.ndim for _, x in leaves} == {0, 1, 2}
    for (path, d), theta in zip(leaves, jtu.tree_leaves(params)):
        if theta.ndim >= 2:
            # ‖d_f‖ = ‖θ_f‖ for every row f (output neuron) of a Linear weight (out, in).
            np.testing.assert_allclose(row_norms(d), row_norms(theta), rtol=1e-12)
            assert not np.allclose(d, theta)
        else:
            np.testing.assert_array_equal(d, 0.0, err_msg=jtu.keystr(path))


def test_direction_with_1d_leaves_scaled_per_leaf(model):
    direction = random_direction(model, KEY, ignore_1d=False)
    for d, theta in zip(jtu.tree_leaves(direction), jtu.tree_leaves(eqslax.trainable(model))):
        if theta.ndim >= 2:
            np.testing.assert_allclose(row_norms(d), row_norms(theta), rtol=1e-12)
        else:
            np.testing.assert_allclose(np.linalg.norm(d), np.linalg.norm(theta), rtol=1e-12)


def test_directions_depend_on_the_key(model):
    a = flatten_params_of(random_direction(model, jax.random.key(1)))
    b = flatten_params_of(random_direction(model, jax.random.key(2)))
    assert abs(np.dot(a, b)) < 0.9 * np.linalg.norm(a) * np.linalg.norm(b)


# 1-D and 2-D slices. One grid throughout, so that each evaluation compiles once.

ALPHAS = np.linspace(-1.0, 1.0, 5)  # ALPHAS[2] = 0
BETAS = np.array([-0.4, 0.0, 0.7])  # BETAS[1] = 0


@pytest.fixture(scope="module")
def directions(model):
    return random_direction(model, jax.random.key(1)), random_direction(model, jax.random.key(2))


def test_loss_line_is_the_loss_along_the_direction(model, loss_of_model, directions):
    direction, _ = directions
    line = np.asarray(loss_line(loss_of_model, model, direction, ALPHAS))
    assert line.shape == (5,)
    # f(0) = L(θ*) and f(α) = L(θ* + α d).
    np.testing.assert_allclose(line[2], loss_of_model(model), rtol=1e-12)
    for alpha, value in zip(ALPHAS, line):
        expected = loss_of_model(shifted(model, (alpha, direction)))
        np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_loss_surface_is_the_loss_on_the_plane(model, loss_of_model, directions):
    d1, d2 = directions
    surface = np.asarray(loss_surface(loss_of_model, model, d1, d2, ALPHAS, BETAS))
    assert surface.shape == (5, 3)
    np.testing.assert_allclose(surface[2, 1], loss_of_model(model), rtol=1e-12)
    # surface[i, j] = L(θ + α_i d1 + β_j d2): indexing "ij".
    expected = loss_of_model(shifted(model, (ALPHAS[0], d1), (BETAS[2], d2)))
    np.testing.assert_allclose(surface[0, 2], expected, rtol=1e-12)
    # The β = 0 column is the 1-D slice along d1.
    line = loss_line(loss_of_model, model, d1, ALPHAS)
    np.testing.assert_allclose(surface[:, 1], line, rtol=1e-12)
    assert np.ptp(surface) > 1e-3  # the loss does change on this grid


def test_loss_surface_chunked_and_jitted_agree(model, loss_of_model, directions):
    whole = loss_surface(loss_of_model, model, *directions, ALPHAS, BETAS)
    # 15 points in chunks of 4: the last chunk is partial.
    chunked = loss_surface(loss_of_model, model, *directions, ALPHAS, BETAS, chunk_size=4)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    jitted = eqx.filter_jit(loss_surface)(loss_of_model, model, *directions, ALPHAS, BETAS)
    np.testing.assert_allclose(jitted, whole, rtol=1e-12)


def test_interpolation_between_two_models(model, loss_of_model):
    other = feedforward(jax.random.key(7), SIZES, train_decay=True)
    # α = (0.5 + 0.5 ALPHAS) runs from 0 (model) to 1 (other).
    line = np.asarray(
        loss_line(loss_of_model, model, direction_between(model, other), 0.5 + 0.5 * ALPHAS)
    )
    np.testing.assert_allclose(
        line[[0, -1]], [loss_of_model(model), loss_of_model(other)], rtol=1e-12
    )
    assert abs(line[0] - line[-1]) > 1e-3


def test_slices_reject_bad_input(model, loss_of_model):
    direction = random_direction(model, KEY)
    other = eqx.tree_at(lambda d: d.layers[0].weight, direction, jnp.zeros((6, 4)))
    with pytest.raises(
        ValueError, match=r"shapes differ: \.layers\[0\]\.weight \(6, 4\) vs \(5, 4\)"
    ):
        loss_line(loss_of_model, model, other, jnp.zeros(2))
    with pytest.raises(ValueError, match="chunk_size"):
        loss_line(loss_of_model, model, direction, jnp.zeros(2), chunk_size=0)
    with pytest.raises(ValueError, match="scalar"):
        loss_line(lambda m: jnp.zeros(2), model, direction, jnp.zeros(2))
    with pytest.raises(ValueError, match="no trainable"):
        random_direction(eqslax.LIF(3), KEY)


# Trajectories in their PCA plane


def walk(model, seed, steps=6, scale=0.05):
    """A random-walk 'training trajectory' of models starting at ``model``."""
    theta = np.asarray(flatten_params(model))
    moves = scale * np.random.default_rng(seed).normal(size=(steps - 1, theta.size))
    path = theta + np.concatenate([np.zeros((1, theta.size)), np.cumsum(moves, axis=0)])
    return [eqx.combine(unflatten_params(p, model), model) for p in path]


def test_flatten_round_trip(model):
    vector = flatten_params(model)
    assert vector.shape == (sum(x.size for x in jtu.tree_leaves(eqslax.trainable(model))),)
    assert_tree_allclose(unflatten_params(vector, model), eqslax.trainable(model), rtol=0, atol=0)
    with pytest.raises(ValueError, match="vector"):
        unflatten_params(vector[:-1], model)


def test_pca_matches_an_independent_svd(model):
    trajectory = walk(model, 3)
    pca = trajectory_pca(trajectory)
    theta = np.stack([np.asarray(flatten_params(m)) for m in trajectory])
    m = theta[:-1] - theta[-1]  # rows θ_i − θ_n, i = 0..n−1
    _, s, vt = np.linalg.svd(m - m.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(pca.explained_variance_ratio, s[:2] ** 2 / np.sum(s**2), rtol=1e-10)
    for k in range(2):
        np.testing.assert_allclose(abs(np.dot(pca.components[k], vt[k])), 1.0, rtol=1e-10)
        # Sign convention: the largest-magnitude entry of each direction is positive.
        assert pca.components[k][np.argmax(np.abs(pca.components[k]))] > 0
        signed = vt[k] * np.sign(np.dot(pca.components[k], vt[k]))
        np.testing.assert_allclose(
            pca.coordinates[0][:, k], (theta - theta[-1]) @ signed, atol=1e-12
        )
    np.testing.assert_allclose(pca.coordinates[0][-1], [0.0, 0.0], atol=1e-15)
    # The directions as PyTrees are the components, ready for loss_surface.
    for direction, component in zip(pca.directions, pca.components):
        np.testing.assert_allclose(flatten_params_of(direction), component, rtol=0, atol=0)


def test_uncentred_pca_coordinates_are_the_principal_scores(model):
    trajectory = walk(model, 4)
    pca = trajectory_pca(trajectory, center=False)
    theta = np.stack([np.asarray(flatten_params(m)) for m in trajectory])
    u, s, _ = np.linalg.svd(theta[:-1] - theta[-1], full_matrices=False)
    scores = u[:, :2] * s[:2]
    np.testing.assert_allclose(
        np.abs(pca.coordinates[0][:-1]), np.abs(scores), rtol=1e-9, atol=1e-12
    )


def test_trajectory_in_a_plane_is_explained_and_rebuilt_exactly():
    rng = np.random.default_rng(0)
    end = rng.normal(size=30)
    e1, e2 = rng.normal(size=30), rng.normal(size=30)  # spanning, not orthogonal
    a, b = rng.normal(size=8), rng.normal(size=8)
    points = end + a[:, None] * e1 + b[:, None] * e2
    trajectory = np.concatenate([points, end[None]])
    pca = trajectory_pca(jnp.asarray(trajectory))
    np.testing.assert_allclose(np.sum(pca.explained_variance_ratio), 1.0, rtol=1e-12)
    x, y = pca.coordinates[0].T
    rebuilt = end + x[:, None] * pca.components[0] + y[:, None] * pca.components[1]
    np.testing.assert_allclose(rebuilt, trajectory, atol=1e-12)
    assert pca.directions is None  # flat vectors and no template model


def test_several_trajectories_share_one_plane(model):
    bptt = walk(model, 5)
    other = walk(model, 6, steps=4)
    pca = trajectory_pca([bptt, other], reference=bptt[-1])
    assert [c.shape for c in pca.coordinates] == [(6, 2), (4, 2)]
    np.testing.assert_allclose(pca.coordinates[0][-1], 0.0, atol=1e-15)
    d = np.asarray(flatten_params(other[1]) - flatten_params(bptt[-1]))
    np.testing.assert_allclose(pca.coordinates[1][1], np.asarray(pca.components) @ d, rtol=1e-12)
    alphas, betas = trajectory_grid(pca.coordinates, num=7)
    points = np.concatenate(pca.coordinates)
    np.testing.assert_allclose(alphas[-1], 1.05 * np.max(np.abs(points[:, 0])), rtol=1e-12)
    assert alphas.shape == betas.shape == (7,) and alphas[0] == -alphas[-1]


def test_pca_plane_landscape_is_centred_on_the_reference(model, loss_of_model):
    trajectory = walk(model, 3)
    pca = trajectory_pca(trajectory)
    surface = np.asarray(
        loss_surface(loss_of_model, trajectory[-1], *pca.directions, ALPHAS, BETAS)
    )
    np.testing.assert_allclose(surface[2, 1], loss_of_model(trajectory[-1]), rtol=1e-12)


def test_pca_rejects_bad_trajectories(model):
    trajectory = walk(model, 3)
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        trajectory_pca(trajectory[-2:])
    with pytest.raises(ValueError, match="trajectory 1 has"):
        trajectory_pca([jnp.zeros((3, 5)), jnp.zeros((3, 6))])
    with pytest.raises(TypeError, match="trajectories"):
        trajectory_pca(3)


# Gradient comparison


def tree(weight_0, bias_0, weight_1):
    return {
        "layers": [
            {"weight": jnp.asarray(weight_0), "bias": jnp.asarray(bias_0)},
            {"weight": jnp.asarray(weight_1)},
        ]
    }


A = tree([[3.0, 0.0]], [4.0], [[1.0, 1.0]])
B = tree([[0.0, 4.0]], [3.0], [[2.0, 0.0]])


def test_cosine_similarity_by_hand():
    c = cosine_similarity(A, B).to_dict()
    w0, b0, w1 = "['layers'][0]['weight']", "['layers'][0]['bias']", "['layers'][1]['weight']"
    assert set(c["layers"]) == {"['layers'][0]", "['layers'][1]"}
    expected_parameters = {
        w0: (0.0, 3 / 4),
        b0: (1.0, 4 / 3),
        w1: (1 / math.sqrt(2), math.sqrt(2) / 2),
    }
    # Layer 0 concatenates (3, 0, 4) and (0, 4, 3): 12 / (5·5).
    expected_layers = {"['layers'][0]": (12 / 25, 1.0), "['layers'][1]": expected_parameters[w1]}
    for group, expected in (("parameters", expected_parameters), ("layers", expected_layers)):
        for name, (cosine, ratio) in expected.items():
            assert c[group][name]["cosine"] == pytest.approx(cosine, rel=1e-12, abs=1e-15)
            assert c[group][name]["ratio"] == pytest.approx(ratio, rel=1e-12)
    # Global: a = (3, 0, 4, 1, 1), b = (0, 4, 3, 2, 0).
    assert c["global"]["cosine"] == pytest.approx(14 / math.sqrt(27 * 29), rel=1e-12)
    assert c["global"]["ratio"] == pytest.approx(math.sqrt(27 / 29), rel=1e-12)


def test_cosine_similarity_of_a_gradient_with_itself_its_negative_and_zero(model, batch):
    g = eqslax.BPTT().grad(model, LOSS, *batch)
    negative = jtu.tree_map(jnp.negative, g)
    zeros = jtu.tree_map(jnp.zeros_like, g)
    same, opposite = cosine_similarity(g, g), cosine_similarity(g, negative)
    to_zero, from_zero = cosine_similarity(g, zeros), cosine_similarity(zeros, g)
    assert same.layer_names == (".layers[0]", ".layers[1]", ".layers[2]", ".layers[3]")
    for c, cosine in ((same, 1.0), (opposite, -1.0), (to_zero, 0.0), (from_zero, 0.0)):
        for values in (c.parameter_cosine, c.layer_cosine, c.global_cosine):
            np.testing.assert_allclose(values, cosine, rtol=1e-12)
    for values in (same.layer_ratio, opposite.layer_ratio, same.global_ratio):
        np.testing.assert_allclose(values, 1.0, rtol=1e-12)
    np.testing.assert_array_equal(from_zero.parameter_ratio, 0.0)
    assert np.all(np.isfinite(to_zero.parameter_ratio))


def test_cosine_similarity_matches_by_path():
    x = jnp.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"only in `grads_a`: \['y'\].*only in `grads_b`: \['z'\]"):
        cosine_similarity({"x": x, "y": x}, {"x": x, "z": x})
    with pytest.raises(ValueError, match=r"\['x'\] \(2,\) vs \(3,\)"):
        cosine_similarity({"x": x}, {"x": jnp.ones(3)})
    with pytest.raises(ValueError, match="eps"):
        cosine_similarity(A, B, eps=0.0)


def test_cosine_similarity_jits_and_prints():
    eager = cosine_similarity(A, B)
    jitted = jax.jit(cosine_similarity)(A, B)
    assert isinstance(jitted, GradientComparison)
    assert_tree_allclose(jitted, eager)
    lines = str(eager).splitlines()
    assert len(lines) == 1 + 1 + 2 + 3  # header, global, two layers, three parameters
    assert lines[1].split()[:2] == ["global", f"{14 / math.sqrt(27 * 29):.6f}"]


def test_rule_against_reference(model, batch):
    # TBPTT with one window of the whole sequence is BPTT; with window 1 it is not.
    whole = gradient_similarity(eqslax.TruncatedBPTT(STEPS), eqslax.BPTT(), model, LOSS, *batch)
    np.testing.assert_allclose(whole.layer_cosine, 1.0, rtol=1e-10)
    np.testing.assert_allclose(whole.layer_ratio, 1.0, rtol=1e-10)
    short = gradient_similarity(eqslax.TruncatedBPTT(1), eqslax.BPTT(), model, LOSS, *batch)
    assert float(short.global_cosine) < 1 - 1e-6
    with pytest.raises(TypeError, match="reference"):
        gradient_similarity(eqslax.BPTT(), "bptt", model, LOSS, *batch)


def test_recorder_records_the_chosen_steps(model, batch):
    recorder = SimilarityRecorder(eqslax.TruncatedBPTT(STEPS), every=2)
    results = [recorder(step, model, LOSS, *batch) for step in range(5)]
    assert [r is None for r in results] == [False, True, False, True, False]
    assert recorder.steps == [0, 2, 4]
    curves = recorder.layer_curves()
    assert list(curves) == [".layers[0]", ".layers[1]", ".layers[2]", ".layers[3]"]
    for values in curves.values():
        np.testing.assert_allclose(values, np.ones(3), rtol=1e-10)
    assert recorder.global_curve().shape == (3,)
    chosen = SimilarityRecorder(eqslax.BPTT(), steps=[1, 3])
    assert [chosen.wants(s) for s in range(4)] == [False, True, False, True]
    with pytest.raises(ValueError, match="every"):
        SimilarityRecorder(eqslax.BPTT(), every=0)
