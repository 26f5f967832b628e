# %% [markdown]
# # 1. A first network
#
# A spiking network in eqslax is an `eqslax.Connect` of Equinox modules: linear maps and
# neuron populations, applied in order at every time step. Neurons carry an explicit,
# typed state record (`LIFState(v=...)`); a step is `state, spikes = neuron(state, x)`.
# Modules are unbatched: one sample at a time, batches come from `jax.vmap`.

# %%
import equinox as eqx
import jax
import jax.numpy as jnp

import eqslax
import eqslax.plot

lif = eqslax.LIF(3, decay=0.9, threshold=1.0)
state = lif.init_state()
for t in range(4):
    state, spikes = lif(state, jnp.array([0.3, 0.6, 1.2]))
    print(f"t={t}  v={state.v}  spikes={spikes}")

# %% [markdown]
# The membrane follows $v_t = \lambda v_{t-1} + x_t - s_{t-1}\vartheta$ (subtractive reset)
# and spikes with $s_t = H(v_t - \vartheta)$. The third unit crosses the threshold at
# every step; the first one integrates for three steps first.
#
# A network: two linear maps, a LIF hidden layer and a leaky-integrator readout.

# %%
k1, k2 = jax.random.split(jax.random.key(0))
model = eqslax.Connect([
    eqx.nn.Linear(20, 64, key=k1), eqslax.LIF(64, decay=0.9),
    eqx.nn.Linear(64, 5, key=k2), eqslax.LI(5, decay=0.8),
])
xs = (jax.random.uniform(jax.random.key(1), (100, 20)) < 0.1).astype(jnp.float32)
final_state, ys = eqslax.simulate(model, xs)
print("input", xs.shape, "-> output", ys.shape)

# %% [markdown]
# `eqslax.record` keeps every layer's output and every state over time, which is what
# the raster and membrane plots read.

# %%
_, recording = eqslax.record(model, xs)
print([layer.shape for layer in recording.layers])
eqslax.plot.network_raster(recording, xs)

# %%
eqslax.plot.membrane(recording.states.layers[1].v, threshold=1.0, neurons=slice(0, 5))

# %% [markdown]
# A batch is a `vmap` away; shapes are checked at the boundary, so a wrong input is a
# clear error before any work.

# %%
batch = jnp.stack([xs, xs[::-1]])
outputs = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(batch)
print("batched outputs", outputs.shape)
try:
    eqslax.simulate(model, xs[:, :19])
except Exception as error:
    print(type(error).__name__, ":", str(error).splitlines()[0])
