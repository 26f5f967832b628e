# %% [markdown]
# # 3. Online learning
#
# An online rule learns forward in time: it carries traces (eligibility traces, an
# influence matrix) beside the model's state and produces, at every step, its estimate of
# the gradient of that step's loss term. `eqslax.train_online` applies an optimiser update
# at every time step; `eqslax.train_online_deferred` sums the step gradients and updates
# once per batch. Both take the same rules: OSTL, OTTT, OTPE, ApproxOTPE, e-prop and RTRL.

# %%
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import eqslax
from eqslax.data import randman

# EQSLAX_TUTORIALS=full runs the full sizes (small by default, as in CI)
full = os.environ.get("EQSLAX_TUTORIALS", "small") == "full"
samples, epochs = (200, 10) if full else (60, 3)
data = randman(jax.random.key(0), n_classes=5, encoding="time", samples_per_class=samples)
model = eqslax.feedforward((20, 64, 5), key=jax.random.key(1), readout="li")
loss = eqslax.PerStep()        # mean over time of a per-step cross-entropy

for name, rule in [("OSTL", eqslax.OSTL()), ("OTTT", eqslax.OTTT()),
                   ("OTPE", eqslax.OTPE()), ("e-prop", eqslax.EProp())]:
    step = eqslax.train_online(model, rule, loss, optax.adam(1e-3))
    _, history = eqslax.fit(model, step, data, epochs=epochs, batch_size=16,
                            key=jax.random.key(2), progress=False)
    print(f"{name:7s} test accuracy {history['test_accuracy'][-1]:.3f}")

# %% [markdown]
# ## Memory against sequence length (Fig. 8, bottom)
#
# BPTT stores the whole forward pass, so its memory grows linearly with the number of
# steps $T$. An online rule keeps only its traces: its working memory is the same at every
# $T$. XLA's own buffer assignment for the compiled gradient shows it.

# %%
def temp_bytes(rule, steps):
    xs = jnp.zeros((8, steps, 20))
    ys = jnp.zeros((8,), jnp.int32)
    params, static = eqx.partition(model, eqx.is_array)

    def grad(params, xs, ys):
        return rule.grad(eqx.combine(params, static), loss, xs, ys)

    stats = jax.jit(grad).lower(params, xs, ys).compile().memory_analysis()
    return stats.temp_size_in_bytes


lengths = (100, 200, 400, 800) if full else (50, 100, 200)
print("| T | " + " | ".join(str(t) for t in lengths) + " |")
print("|---|" + "---|" * len(lengths))
for name, rule in [("BPTT", eqslax.BPTT()), ("OSTL", eqslax.OSTL()), ("OTTT", eqslax.OTTT())]:
    sizes = [temp_bytes(rule, t) / 2**20 for t in lengths]
    print(f"| {name} MiB | " + " | ".join(f"{s:.2f}" for s in sizes) + " |")
