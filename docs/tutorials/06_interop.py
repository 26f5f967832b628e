# %% [markdown]
# # 6. Interoperability: Flax, NIR and NeuroBench
#
# ## Flax
#
# `eqslax.flax_bridge.LinenCell(model)` makes any eqslax network a `flax.linen` RNN cell
# (and `NNXCell` an `nnx` one); its trainable leaves become Flax parameters. The outputs
# are the same as eqslax's own, bit for bit.

# %%
import os
import tempfile

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import eqslax
import eqslax.nir
from eqslax.flax_bridge import LinenCell
from eqslax.neurobench import neurobench_metrics

k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
model = eqslax.Connect([eqx.nn.Linear(4, 8, key=k1), eqslax.LIF(8, decay=0.9),
                        eqx.nn.Linear(8, 3, key=k2), eqslax.LIF(3, decay=0.9)])
xs = (jax.random.uniform(k3, (2, 40, 4)) < 0.3).astype(jnp.float32) * 2.0

rnn = nn.RNN(LinenCell(model))
params = rnn.init(jax.random.key(1), xs)["params"]
flax_out = rnn.apply({"params": params}, xs)
eqslax_out = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)
print("Flax parameters:", list(params))
print("identical outputs:", bool(np.array_equal(flax_out, eqslax_out)))

# %% [markdown]
# ## NIR
#
# `eqslax.nir.to_nir(model, dt=...)` writes the network as a Neuromorphic IR graph, with
# forward Euler: $\tau = \Delta t / (1 - \lambda)$, $r = 1/(1-\lambda)$. `from_nir` reads
# it back (or a graph exported by snnTorch, Norse or Spyx, with `convention=`);
# `save_nir`/`load_nir` go through an HDF5 file.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "network.nir")
    eqslax.nir.save_nir(path, model, dt=1e-3)
    restored = eqslax.nir.load_nir(path)
graph = eqslax.nir.to_nir(model, dt=1e-3)
print("nodes:", sorted(graph.nodes))
again = jax.vmap(lambda x: eqslax.simulate(restored, x)[1])(xs)
print("round trip identical:", bool(np.array_equal(again, eqslax_out)))

# %% [markdown]
# ## NeuroBench
#
# `eqslax.neurobench.neurobench_metrics` counts NeuroBench's static and workload metrics
# (parameters, connection and activation sparsity, synaptic operations) from the
# recorded activity of any `Connect`.

# %%
labels = jnp.array([0, 2])
metrics = neurobench_metrics(model, xs, labels)
for name, value in metrics.items():
    print(f"{name:22s} {value}")
