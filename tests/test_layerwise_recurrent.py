"""Layer-wise rules on `Recurrent(neuron)` layers: OSTL is D-RTRL (diagonal RTRL, the
self-connection path kept), OTTT/ApproxOTPE trace y_(t-1) as one more presynaptic input,
e-prop with Recurrent(ALIF) is the LSNN e-prop of Bellec et al. 2020. Each is pinned to
a hand-written recursion, to RTRL(diagonal=True) and to each other; the BPTT identities of
every rule x layer kind x neuron are in test_layerwise_contract.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

N_IN, N, STEPS, BATCH = 4, 3, 8, 2
LOSS = eqslax.PerStep()
SLOPE = 5.0


def one_layer(key, neuron, recurrent_weight, scale=1.5):
    k = jax.random.split(key, 2)
    linear = eqx.nn.Linear(N_IN, N, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, scale * jnp.abs(linear.weight))
    return eqslax.Connect([linear, eqslax.Recurrent(neuron, weight=recurrent_weight)])


def data(key, n_in=N_IN, n_classes=N):
    xs = random_spikes(key, (BATCH, STEPS, n_in), 0.5)
    return xs, jnp.arange(BATCH) % n_classes


def full_weight(key, scale=1.5):
    return scale * jax.random.uniform(key, (N, N), minval=-1.0, maxval=1.0)


def fires(model, xs):
    _, outputs = jax.vmap(lambda x: eqslax.simulate(model, x))(xs)
    return float(outputs.sum())


def hand_drtrl(w, b, r, xs, ys, decay, threshold):
    """D-RTRL for Recurrent(LIF) (subtractive reset, reset decayed), per sample:
    P_t = dv_t/dθ = λ E_(t-1) + direct + r_ii S_(t-1), S_t = σ'_t P_t, E_t = (1 - θσ'_t) P_t.
    Returns the OSTL gradient and the SnAp-1 gradient, which adds the output path through
    other units: Σ_i g_i σ'_i r_ij S_(t-1),j for i != j."""
    d, off = np.diag(r), r - np.diag(np.diag(r))
    ostl = [np.zeros_like(w), np.zeros_like(b), np.zeros_like(r)]
    snap = [np.zeros_like(w), np.zeros_like(b), np.zeros_like(r)]
    for x_seq, label in zip(xs, ys):
        u, y = np.zeros(N), np.zeros(N)
        e = [np.zeros_like(w), np.zeros_like(b), np.zeros_like(r)]
        s = [np.zeros_like(w), np.zeros_like(b), np.zeros_like(r)]
        for x in x_seq:
            v = decay * u + w @ x + b + r @ y
            psi = 1.0 / (1.0 + SLOPE * np.abs(v - threshold)) ** 2
            spikes = (v - threshold >= 0).astype(float)
            direct = [np.broadcast_to(x, w.shape), np.ones_like(b), np.broadcast_to(y, r.shape)]
            rows = [d[:, None], d, d[:, None]]
            p = [decay * ei + di + ri * si for ei, di, ri, si in zip(e, direct, rows, s)]
            factor = [psi[:, None], psi, psi[:, None]]
            keep = [
                (1 - threshold * psi)[:, None],
                1 - threshold * psi,
                (1 - threshold * psi)[:, None],
            ]
            old_s = s
            s = [f * pi for f, pi in zip(factor, p)]
            e = [k * pi for k, pi in zip(keep, p)]
            probs = np.exp(spikes) / np.exp(spikes).sum()
            g = probs - np.eye(N)[label]
            cross = off.T @ (g * psi)
            shapes = [lambda a: a[:, None], lambda a: a, lambda a: a[:, None]]
            for i in range(3):
                ostl[i] = ostl[i] + shapes[i](g) * s[i]
                snap[i] = snap[i] + shapes[i](g) * s[i] + shapes[i](cross) * old_s[i]
            u, y = v - threshold * spikes, spikes
    scale = 1.0 / (len(xs) * xs.shape[1])
    return [scale * a for a in ostl], [scale * a for a in snap]


def test_ostl_is_hand_written_drtrl_and_rtrl_diagonal_adds_the_output_path():
    k = jax.random.split(jax.random.key(7), 3)
    neuron = eqslax.LIF(N, decay=0.8, surrogate=eqslax.FastSigmoid(SLOPE))
    model = one_layer(k[0], neuron, full_weight(k[1]))
    xs, ys = data(k[2])
    assert fires(model, xs) > 0
    linear, rec = model.layers
    ostl_ref, snap_ref = hand_drtrl(
        *(np.asarray(a) for a in (linear.weight, linear.bias, rec.weight, xs, ys)), 0.8, 1.0
    )
    ostl = eqslax.OSTL().grad(model, LOSS, xs, ys)
    snap = eqslax.RTRL(diagonal=True).grad(model, LOSS, xs, ys)
    for got, ref in ((ostl, ostl_ref), (snap, snap_ref)):
        parts = (got.layers[0].weight, got.layers[0].bias, got.layers[1].weight)
        for a, b in zip(parts, ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # the two differ on this net: SnAp-1's output path is not vacuous
    assert np.abs(snap_ref[2] - ostl_ref[2]).max() > 1e-3 * np.abs(ostl_ref[2]).max()


def two_layers(key, recurrent_weight, detach=True):
    """Linear -> Recurrent(LIF) -> Linear -> LIF, resets detached (OTTT's exact setting)."""
    k = jax.random.split(key, 3)
    first = eqx.nn.Linear(N_IN, N, key=k[0])
    first = eqx.tree_at(lambda m: m.weight, first, 1.5 * jnp.abs(first.weight))
    second = eqx.nn.Linear(N, 2, key=k[1])
    second = eqx.tree_at(lambda m: m.weight, second, 3.0 * jnp.abs(second.weight))
    hidden = eqslax.Recurrent(
        eqslax.LIF(N, decay=0.8, detach_reset=detach), weight=recurrent_weight
    )
    return eqslax.Connect([first, hidden, second, eqslax.LIF(2, decay=0.7, detach_reset=detach)])


def zero_diagonal(key):
    return full_weight(key) * (1.0 - jnp.eye(N))


def test_ottt_traces_the_previous_output_and_equals_ostl_without_self_connections():
    """With detached resets and a zero-diagonal W_rec, OSTL's eligibility for W_rec is
    the presynaptic trace of y_(t-1): OTTT == OSTL in every layer."""
    k = jax.random.split(jax.random.key(11), 3)
    model = two_layers(k[0], zero_diagonal(k[1]))
    xs, ys = data(k[2], n_classes=2)
    assert fires(model, xs) > 0
    ostl = eqslax.OSTL().grad(model, LOSS, xs, ys)
    assert jnp.linalg.norm(ostl.layers[1].weight) > 0
    assert_tree_allclose(eqslax.OTTT().grad(model, LOSS, xs, ys), ostl)


def test_otpe_and_approx_otpe_with_zero_leak_reduce_to_ostl_and_ottt_on_recurrent_layers():
    k = jax.random.split(jax.random.key(12), 3)
    model = two_layers(k[0], full_weight(k[1]), detach=False)
    xs, ys = data(k[2], n_classes=2)
    assert fires(model, xs) > 0
    assert_tree_allclose(
        eqslax.OTPE(leak=0.0).grad(model, LOSS, xs, ys), eqslax.OSTL().grad(model, LOSS, xs, ys)
    )
    assert_tree_allclose(
        eqslax.ApproxOTPE(leak=0.0).grad(model, LOSS, xs, ys),
        eqslax.OTTT().grad(model, LOSS, xs, ys),
    )


MSE = eqslax.PerStep(lambda y, c: 0.5 * jnp.sum((y - c) ** 2), target="value")


def lsnn(key, recurrent_weight, detach=False, kappa=0.6):
    k = jax.random.split(key, 2)
    hidden = eqx.nn.Linear(N_IN, N, key=k[0])
    hidden = eqx.tree_at(lambda m: m.weight, hidden, 1.5 * jnp.abs(hidden.weight))
    alif = eqslax.ALIF(N, 0.9, 1.0, 0.8, 0.5, reset_decay=False, detach_reset=detach)
    return eqslax.Connect(
        [
            hidden,
            eqslax.Recurrent(alif, weight=recurrent_weight),
            eqx.nn.Linear(N, 2, key=k[1]),
            eqslax.LI(2, kappa),
        ]
    )


def regression(key):
    k = jax.random.split(key, 2)
    xs = random_spikes(k[0], (BATCH, STEPS, N_IN), 0.5)
    return xs, jax.random.normal(k[1], (BATCH, STEPS, 2))


def test_lsnn_eprop_by_hand():
    r"""e-prop on Recurrent(ALIF) (Bellec et al. 2020), one sample: eligibility vectors of
    W_in (presynaptic x_t) and W_rec (presynaptic z_(t-1)), with the reset neglected:
    eps^a_t = psi_(t-1) eps^v_(t-1) + (rho - psi_(t-1) beta) eps^a_(t-1),
    eps^v_t = alpha eps^v_(t-1) + pre_t, e_t = psi_t (eps^v_t - beta eps^a_t),
    ebar_t = kappa ebar_(t-1) + e_t, grad_t = L_t ebar_t, L_t = W_out^T (y_t - y*_t)."""
    alpha, theta, rho, beta, kappa = 0.9, 1.0, 0.8, 0.5, 0.6
    k = jax.random.split(jax.random.key(21), 3)
    model = lsnn(k[0], zero_diagonal(k[1]) + jnp.diag(jnp.array([0.4, -0.3, 0.2])))
    xs, targets = regression(k[2])
    x_seq, target = np.asarray(xs[0]), np.asarray(targets[0])
    linear, rec, out = model.layers[0], model.layers[1], model.layers[2]
    w, b, r = (np.asarray(a) for a in (linear.weight, linear.bias, rec.weight))
    w_out, b_out = np.asarray(out.weight), np.asarray(out.bias)
    v, a, z, y = np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(2)
    psi_prev = np.zeros(N)
    eps = {
        name: (np.zeros(shape), np.zeros(shape))
        for name, shape in (("in", w.shape), ("rec", r.shape))
    }
    ebar = {"in": np.zeros(w.shape), "rec": np.zeros(r.shape)}
    total = {"in": np.zeros(w.shape), "rec": np.zeros(r.shape)}
    for x, c in zip(x_seq, target):
        pre = {"in": x, "rec": z}
        v = alpha * v + w @ x + b + r @ z - theta * z
        for name in eps:
            ev, ea = eps[name]
            ea = psi_prev[:, None] * ev + (rho - psi_prev * beta)[:, None] * ea
            ev = alpha * ev + pre[name][None, :]
            eps[name] = (ev, ea)
        a = rho * a + z
        distance = v - (theta + beta * a)
        z = (distance >= 0).astype(float)
        psi = 1.0 / (1.0 + 25.0 * np.abs(distance)) ** 2
        y = kappa * y + w_out @ z + b_out
        signal = w_out.T @ (y - c)
        for name in eps:
            ev, ea = eps[name]
            ebar[name] = kappa * ebar[name] + psi[:, None] * (ev - beta * ea)
            total[name] = total[name] + signal[:, None] * ebar[name]
        psi_prev = psi
    grads = eqslax.EProp().grad(model, MSE, xs[:1], targets[:1])
    np.testing.assert_allclose(grads.layers[0].weight, total["in"] / STEPS, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads.layers[1].weight, total["rec"] / STEPS, rtol=1e-10, atol=1e-13)
    assert np.abs(total["rec"]).max() > 1e-3 and np.abs(eps["rec"][1]).max() > 1e-3


def test_eprop_with_a_memoryless_readout_equals_ostl_on_one_recurrent_layer():
    """e-prop keeps y_(t-1) as an input only; with no self-connections, the reset kept and
    a memoryless readout (kappa = 0) it is OSTL's D-RTRL."""
    k = jax.random.split(jax.random.key(23), 3)
    model = lsnn(k[0], zero_diagonal(k[1]), kappa=0.0)
    xs, targets = regression(k[2])
    ostl = eqslax.OSTL().grad(model, MSE, xs, targets)
    assert jnp.linalg.norm(ostl.layers[1].weight) > 0
    assert_tree_allclose(
        eqslax.EProp(reset_in_eligibility=True).grad(model, MSE, xs, targets), ostl
    )


def test_refusals_name_the_layer_and_why():
    k = jax.random.split(jax.random.key(5), 2)
    coupled = eqslax.Connect(
        [
            eqx.nn.Linear(N_IN, N, key=k[0]),
            eqslax.Recurrent(eqslax.Connect([eqslax.LIF(N)]), key=k[1]),
        ]
    )
    with pytest.raises(ValueError, match=r"layer 1 \(Recurrent\(Connect\)\) is not an elementwise"):
        eqslax.OSTL().init_traces(coupled, coupled.init_state())
    alif = one_layer(k[0], eqslax.ALIF(N, train_threshold=True), jnp.zeros((N, N)))
    with pytest.raises(ValueError, match=r"OTTT: layer 1 \(Recurrent\) .* 2 state variables"):
        eqslax.OTTT().init_traces(alif, alif.init_state())
    rlif = eqslax.Connect([eqx.nn.Linear(N_IN, N, key=k[0]), eqslax.RLIF(N, key=k[1])])
    with pytest.raises(ValueError, match=r"OTPE: layer 1 \(RLIF\) .*eqslax.Recurrent\(eqslax.LIF"):
        eqslax.OTPE().init_traces(rlif, rlif.init_state())
    with pytest.raises(ValueError, match=r"STDP: layer 1 \(Recurrent\) is recurrent"):
        eqslax.STDP().grad(
            one_layer(k[0], eqslax.LIF(N), jnp.zeros((N, N))), eqslax.PerStep(), *data(k[1])
        )
