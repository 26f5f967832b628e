r"""NIR (Neuromorphic Intermediate Representation) export and import; needs
`pip install "eqslax[nir]"`.

`to_nir` writes a `Connect` (or one layer) as a `nir.NIRGraph`;
`from_nir` reads one back as a `Connect`; `save_nir` / `load_nir` do
the same through NIR's HDF5 files.

**Graph.** Layers form a chain `input -> layer0 -> ... -> output`. A `cat`
projection $P^{k,i}$ is a `Linear` node between layer $i$ and the input of
layer $k$: a skip connection when $i < k$, a cycle when $i \ge k$. NIR
sums the edges into a node, and eqslax reads the edge that closes a cycle as one step
late, which is what `Connect` computes and how snnTorch and Spyx write recurrent layers
(a `{input, neuron, Linear, output}` sub-graph with `neuron <-> Linear`). A nested
`Connect` is a sub-graph.

**Layers.** `eqx.nn.Linear` is `Affine` (or `Linear` without a bias), `Flatten` is
`Flatten`, `eqx.nn.Conv1d`/`Conv2d` are `Conv1d`/`Conv2d` (PyTorch's layout and
fields: weight `(C_out, C_in / groups, *kernel)`, bias, stride, symmetric zero padding
or `"same"`, dilation, groups, the input's spatial shape). `Recurrent(neuron)` is the
recurrent sub-graph above, `neuron -> recurrent -> neuron` with $W_{rec}$ in the `Linear`
node `recurrent`; its metadata `eqslax.layer = "Recurrent"` brings the layer back on
import, and a peer's sub-graph without it reads as a `cat` self-edge, the same model.
`Delay` is NIR's `Delay` with $\tau_i = d_i\,\Delta t$, read back as $\tau_i/\Delta t$
steps, which must be whole; `DCLSDelay` (one delay per synapse) has no node.

**No NIR node.** `ALIF` (and `Izhikevich`, `LTC`, ...) raise `TypeError` naming the
layer. NIR's spiking neurons (`IF`, `LIF`, `CubaLIF`) fire at a fixed threshold;
ALIF's threshold $\vartheta + \beta a_{t-1}$ rises with each spike, and no NIR node holds
the adaptation $a$. One could spell ALIF as a graph of `LI`, `Threshold` and `Linear`
feedback cycles, but NIR does not fix how a tool delays and orders such cycles, so
peers would not fire as ALIF does; eqslax writes no approximation of that kind.

**Time.** eqslax neurons step without `dt`; NIR's are ODEs. The bridge is the
forward-Euler step of length $\Delta t$ (`dt`): for `LIF`,
$\tau\dot v = (v_\mathrm{leak} - v) + RI$ becomes
$v_t = (1 - \Delta t/\tau)v_{t-1} + (R\Delta t/\tau) I_t$, which is eqslax's
$v_t = \lambda v_{t-1} + I_t$ for

$$
\tau = \frac{\Delta t}{1-\lambda}, \qquad R = \frac{1}{1-\lambda}, \qquad
v_\mathrm{leak} = 0
$$

(Slax's and snnTorch's numbers, with their $\Delta t = 10^{-4}$, the default here).
`CubaLIF` adds $\tau_\mathrm{syn} = \Delta t/(1-\alpha)$,
$w_\mathrm{in} = 1/(1-\alpha)$; `IF` has $R = 1/\Delta t$. Reading back,
$\lambda = 1 - \Delta t/\tau$ and the input gain $g = R\Delta t/\tau$ (one for
eqslax's and snnTorch's files) divides a spiking node's threshold or scales the weights
into an `LI`.

**Reset.** NIR's spiking nodes set $v \leftarrow v_\mathrm{reset}$ at a spike.
eqslax also has the subtractive reset, and two times at which a reset applies
(`reset_decay`); `to_nir` keeps both in node metadata. Files from other tools do
not say, and the tools disagree, hence `from_nir(..., convention=...)`:

- `"eqslax"` (default): NIR's literal reading (zero reset at the spike) unless eqslax
  metadata says otherwise; `dt` from the file's `eqslax.dt` metadata or `1e-4`.
- `"snntorch"`: `snntorch.export_to_nir` files: `dt = 1e-4`, subtractive reset
  of the previous step's spike (`Leaky`'s default).
- `"spyx"`: `spyx.nir.to_nir` files: `dt = 1`, `r` ignored (Spyx writes
  `r = beta`), subtractive reset of the previous step's spike.

`reset=` and `reset_decay=` override any of them.
"""

try:
    import nir  # noqa: F401
except ImportError as error:
    raise ImportError(
        'eqslax.nir needs NIR, an optional extra of eqslax: pip install "eqslax[nir]"'
    ) from error

from ._export import save_nir as save_nir, to_nir as to_nir
from ._import import from_nir as from_nir, load_nir as load_nir
