# %% [markdown]
# # 2. Training with BPTT, and with FPTT on a recurrent network
#
# The Slax paper's first experiment (Fig. 7): a feed-forward SNN trained with
# backpropagation through time and surrogate gradients on Randman, a synthetic task whose
# classes differ in the timing of spikes (T-Randman) or in their rates (R-Randman).

# %%
import os

import equinox as eqx
import jax
import optax

import eqslax
import eqslax.plot
from eqslax.data import randman

# EQSLAX_TUTORIALS=full runs the full sizes (small by default, as in CI)
full = os.environ.get("EQSLAX_TUTORIALS", "small") == "full"
samples, epochs = (200, 30) if full else (100, 15)
data = randman(jax.random.key(0), n_classes=5, encoding="time", samples_per_class=samples)
print("train", data.train_x.shape, "test", data.test_x.shape)

# %%
model = eqslax.feedforward((20, 64, 5), key=jax.random.key(1), readout="li")
loss = eqslax.Accumulated(reduce="mean")          # cross-entropy on the mean membrane
step = eqslax.train_offline(model, loss, optax.adam(5e-3))   # BPTT by default
trained, history = eqslax.fit(
    model, step, data, epochs=epochs, batch_size=32, key=jax.random.key(2), progress=False
)
print(f"test accuracy after {epochs} epochs: {history['test_accuracy'][-1]:.3f}")
eqslax.plot.training_curves({"BPTT": history})

# %% [markdown]
# ## A recurrent edge, trained with FPTT
#
# `cat={k: [i]}` adds a trainable projection from layer $i$ to the *input* of layer $k$;
# a source at or after the target is recurrent and uses the previous step (Fig. 8 top).
# FPTT (Kag & Saligrama 2021) cuts the sequence into segments, takes one optimiser step
# per segment and keeps the parameters near a running average with a dynamic
# regulariser, so no gradient flows across segments.

# %%
k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
recurrent = eqslax.Connect(
    [eqx.nn.Linear(20, 64, key=k1), eqslax.LIF(64), eqx.nn.Linear(64, 5, key=k2), eqslax.LI(5)],
    cat={1: [1]},          # LIF layer 1 receives its own spikes of the previous step
    key=k3,
)
fptt = eqslax.train_fptt(recurrent, eqslax.FPTT(segments=5, alpha=0.5), eqslax.PerStep(),
                         optax.adam(5e-3))
trained, history = eqslax.fit(
    recurrent, fptt, data, epochs=epochs, batch_size=32, key=jax.random.key(4), progress=False
)
print(f"FPTT test accuracy: {history['test_accuracy'][-1]:.3f}")
