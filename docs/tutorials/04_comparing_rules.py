# %% [markdown]
# # 4. Comparing rules
#
# How close is each rule's gradient to BPTT's, and where does training with it lead?
# `eqslax.compare_grads` gives the cosine similarity per parameter, per layer and
# globally (Slax Fig. 10 a); a recorder follows it over training; the loss landscape
# around a solution shows every rule's trajectory (Fig. 10 b).

# %%
import os

import jax
import jax.numpy as jnp
import optax

import eqslax
import eqslax.analysis
import eqslax.plot
from eqslax.data import randman

jax.config.update("jax_enable_x64", True)
# EQSLAX_TUTORIALS=full runs the full sizes (small by default, as in CI)
full = os.environ.get("EQSLAX_TUTORIALS", "small") == "full"
data = randman(jax.random.key(0), n_classes=5, encoding="time",
               samples_per_class=100 if full else 20, dtype=jnp.float64)
model = eqslax.feedforward((20, 32, 5), key=jax.random.key(1), readout="li")
loss = eqslax.PerStep()
xs, ys = data.train_x[:32], data.train_y[:32]
for rule in (eqslax.OSTL(), eqslax.OTTT(), eqslax.OTPE(), eqslax.EProp(), eqslax.RTRL()):
    comparison = eqslax.compare_grads(rule, eqslax.BPTT(), model, loss, xs, ys)
    layers = ", ".join(f"{float(c):.4f}" for c in comparison.layer_cosine)
    print(f"{type(rule).__name__:6s} global {float(comparison.global_cosine):.4f}  "
          f"per layer [{layers}]")

# %% [markdown]
# RTRL is exact: its cosine is 1 in every layer. OSTL is exact in the last layer of a
# feed-forward network; the others approximate the temporal paths through the hidden
# layer.
#
# ## Training trajectories on the loss landscape
#
# Train the same initial model with two rules, record the parameters every few steps,
# and draw the loss surface on the plane of the trajectories' principal components.

# %%
epochs = 6 if full else 2
trajectories = {}
for name, step in [
    ("BPTT", eqslax.train_offline(model, loss, optax.adam(5e-3))),
    ("OSTL", eqslax.train_online(model, eqslax.OSTL(), loss, optax.adam(1e-3))),
]:
    points = []

    def keep(step_number, current, xs, ys, points=points):
        if step_number % 2 == 0:
            points.append(current)

    final, history = eqslax.fit(model, step, data, epochs=epochs, batch_size=16,
                                key=jax.random.key(2), progress=False, on_step=keep)
    trajectories[name] = points + [final]
    print(f"{name}: test accuracy {history['test_accuracy'][-1]:.3f}, {len(points)} points")

reference = trajectories["BPTT"][-1]
pca = eqslax.analysis.trajectory_pca(list(trajectories.values()), reference)
alphas, betas = eqslax.analysis.trajectory_grid(pca.coordinates, num=15 if full else 9,
                                                 margin=1.2)
test_x, test_y = data.test_x[:64], data.test_y[:64]


def test_loss(candidate):
    outputs = jax.vmap(lambda x: eqslax.simulate(candidate, x)[1])(test_x)
    return jnp.mean(jax.vmap(loss)(outputs, test_y))


surface = eqslax.analysis.loss_surface(test_loss, reference, *pca.directions, alphas, betas)
eqslax.plot.landscape(alphas, betas, surface, dict(zip(trajectories, pca.coordinates)),
                      explained_variance=pca.explained_variance_ratio)

# %% [markdown]
# The same study, with several seeds, reports and plots, is one command:
# `eqslax compare --rules bptt,ostl,ottt,otpe,eprop` (see `eqslax compare --help`), or
# `eqslax.compare(...)` from Python.
