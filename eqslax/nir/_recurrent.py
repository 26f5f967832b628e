r"""`eqslax.Recurrent(neuron)` <-> a NIR sub-graph with a cycle.

NIR has no recurrent node: a recurrent layer is the sub-graph that snnTorch writes for
`RLeaky`, `input -> neuron -> output` with `neuron -> recurrent -> neuron`, a `Linear`
node `recurrent` holding $W_{rec}$. NIR sums the edges into the neuron, and the edge
that closes the cycle is read one step late:
$(h_t, y_t) = f(h_{t-1}, x_t + W_{rec} y_{t-1})$, `Recurrent`'s equation. The sub-graph's
metadata `eqslax.layer = "Recurrent"` tells `from_nir` to build the layer back; without
it (a peer's file) the same sub-graph is read as a `cat` self-edge of a `Connect`, the
same model.
"""

import nir
import numpy as np

from .._neurons import Recurrent

LAYER_KEY = "eqslax.layer"
RECURRENT = "Recurrent"
_EDGES = {
    ("input", "neuron"),
    ("neuron", "recurrent"),
    ("recurrent", "neuron"),
    ("neuron", "output"),
}


def recurrent_graph(layer: Recurrent, neuron_node: nir.NIRNode, where: str) -> nir.NIRGraph:
    """`layer` as a sub-graph; `neuron_node` is its neuron's node."""
    in_shape, out_shape = tuple(layer.in_shape), tuple(layer.out_shape)
    if len(in_shape) != 1 or len(out_shape) != 1:
        raise ValueError(
            f"to_nir: {where} (Recurrent) wraps a population of shape {out_shape}; NIR's "
            f"Linear maps vectors, so eqslax writes recurrent layers of 1-D populations only."
        )
    nodes = {
        "input": nir.Input(input_type=np.array(in_shape)),
        "neuron": neuron_node,
        "recurrent": nir.Linear(weight=np.array(layer.weight)),
        "output": nir.Output(output_type=np.array(out_shape)),
    }
    return nir.NIRGraph(
        nodes=nodes, edges=sorted(_EDGES), metadata={LAYER_KEY: RECURRENT}, type_check=True
    )


def is_recurrent_graph(node) -> bool:
    """Whether `node` is a sub-graph that `to_nir` wrote for a `Recurrent` layer."""
    if not isinstance(node, nir.NIRGraph):
        return False
    kind = (node.metadata or {}).get(LAYER_KEY)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    return kind == RECURRENT


def recurrent_parts(graph: nir.NIRGraph, where: str) -> tuple[nir.NIRNode, np.ndarray]:
    """The neuron node and $W_{rec}$ of a `Recurrent` sub-graph, its layout checked."""
    edges = {(str(a), str(b)) for a, b in graph.edges}
    kinds = {
        "input": nir.Input,
        "neuron": (nir.IF, nir.LIF, nir.LI, nir.CubaLIF),
        "recurrent": nir.Linear,
        "output": nir.Output,
    }
    wrong = sorted(
        name for name, kind in kinds.items() if not isinstance(graph.nodes.get(name), kind)
    )
    if edges != _EDGES or set(graph.nodes) != set(kinds) or wrong:
        raise ValueError(
            f"from_nir: {where} is marked {LAYER_KEY} = {RECURRENT!r} but is not the layout "
            f"to_nir writes (nodes input, neuron (IF/LIF/LI/CubaLIF), recurrent (Linear), "
            f"output; edges {sorted(_EDGES)}); it has nodes {sorted(graph.nodes)} and edges "
            f"{sorted(edges)}."
        )
    return graph.nodes["neuron"], np.asarray(graph.nodes["recurrent"].weight, dtype=np.float64)
