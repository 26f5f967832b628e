"""Reading a NIR graph's topology as a chain of layers plus `cat` projections.

Steps: flatten sub-graphs into one graph (their `Input`/`Output` nodes become plain
joins), find the edges that close cycles (a depth-first walk from the input, successors
visited by name), take the longest input-to-output path of the remaining acyclic graph
as the chain, and read every other node as a projection between chain nodes.
"""

import dataclasses

import nir
import numpy as np

from ._conventions import Convention
from ._recurrent import is_recurrent_graph

WEIGHT_NODES = (nir.Linear, nir.Affine)
_PASS = "pass"  # marker for joins: sub-graph Input/Output and Identity nodes


@dataclasses.dataclass
class FlatGraph:
    """One level of nodes, joins removed; `input`/`output` name the graph's I/O."""

    nodes: dict
    edges: set
    input: str
    output: str

    def preds(self, name: str) -> list[str]:
        return sorted(a for a, b in self.edges if b == name)

    def succs(self, name: str) -> list[str]:
        return sorted(b for a, b in self.edges if a == name)


@dataclasses.dataclass(frozen=True)
class Projection:
    """`cat` edge from chain position `source` to the input of `target`; `node` is
    the `Linear`/`Affine` node that weighs it, `None` for a direct (identity) edge."""

    node: str | None
    source: int
    target: int


def _io_node(graph, kind, where: str) -> str:
    names = sorted(name for name, node in graph.nodes.items() if isinstance(node, kind))
    if len(names) != 1:
        raise ValueError(
            f"from_nir: {where} must have exactly one {kind.__name__} node, got {names}."
        )
    return names[0]


def _rnn_edges(graph) -> list[tuple[str, str]] | None:
    """snnTorch's and Spyx's four-node recurrent sub-graph, read as they mean it:
    `input -> neuron <-> weight`, `neuron -> output`, whatever edges the file holds.
    `None` when `graph` is not such a sub-graph."""
    groups = (nir.Input, (nir.LIF, nir.CubaLIF, nir.IF), WEIGHT_NODES, nir.Output)
    found = [[name for name, node in graph.nodes.items() if isinstance(node, g)] for g in groups]
    if len(graph.nodes) != 4 or any(len(names) != 1 for names in found):
        return None
    (inp,), (neuron,), (weight,), (out,) = found
    return [(inp, neuron), (neuron, weight), (weight, neuron), (neuron, out)]


def _flatten_into(graph, prefix: str, nodes: dict, edges: list, convention, where: str):
    """Copy `graph`'s nodes under `prefix` and return the names of its Input/Output."""
    inp = _io_node(graph, nir.Input, where)
    out = _io_node(graph, nir.Output, where)
    graph_edges = [(str(a), str(b)) for a, b in graph.edges]
    if prefix and convention.rnn_subgraphs:
        graph_edges = _rnn_edges(graph) or graph_edges
    ports = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if full in nodes:
            raise ValueError(f"from_nir: node name {full!r} occurs twice after flattening.")
        if is_recurrent_graph(node):  # one layer, read whole by `node_to_layer`
            for inner, inner_node in node.nodes.items():
                _check_values(f"{full}.{inner}", inner_node)
            nodes[full] = node
            continue
        if isinstance(node, nir.NIRGraph):
            ports[name] = _flatten_into(
                node, full + ".", nodes, edges, convention, f"sub-graph {full!r}"
            )
            continue
        is_join = isinstance(node, (nir.Input, nir.Output)) and prefix
        is_join = is_join or type(node).__name__ == "Identity"
        nodes[full] = _PASS if is_join else _check_values(full, node)
    for a, b in graph_edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise ValueError(
                    f"from_nir: the edge {prefix + a!r} -> {prefix + b!r} of {where} names "
                    f"node {prefix + end!r}, which is not in it; its nodes are "
                    f"{sorted(prefix + str(n) for n in graph.nodes)}."
                )
        a = ports[a][1] if a in ports else prefix + a
        b = ports[b][0] if b in ports else prefix + b
        edges.append((a, b))
    return prefix + inp, prefix + out


def _check_values(name: str, node):
    """A node's numbers must not be NaN, and its weights and biases must be finite:
    either would silently give NaN or silent neurons."""
    for field, value in vars(node).items():
        if field in ("input_type", "output_type", "metadata") or value is None:
            continue  # None: an optional field left out (a Conv's input_shape)
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            continue  # not numeric (strings, nested structures)
        finite = field in ("weight", "bias")
        bad = ~np.isfinite(arr) if finite else np.isnan(arr)
        if np.any(bad):
            index = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
            raise ValueError(
                f"from_nir: node {name!r} ({type(node).__name__}) has "
                f"{'a non-finite' if finite else 'a NaN'} `{field}` "
                f"({np.atleast_1d(arr)[index]} at index {index}); "
                f"`{field}` must be {'finite' if finite else 'a number'}."
            )
    return node


def flatten(graph: nir.NIRGraph, convention: Convention) -> FlatGraph:
    """All sub-graphs inlined and joins contracted (each predecessor wired to each
    successor), so that several edges into one node still sum their inputs."""
    nodes: dict = {}
    edge_list: list = []
    inp, out = _flatten_into(graph, "", nodes, edge_list, convention, "the graph")
    edges = set(edge_list)
    for name in [n for n, node in nodes.items() if node is _PASS]:
        preds = [a for a, b in edges if b == name and a != name]
        succs = [b for a, b in edges if a == name and b != name]
        edges = {(a, b) for a, b in edges if name not in (a, b)}
        edges |= {(a, b) for a in preds for b in succs}
        del nodes[name]
    return FlatGraph(nodes=nodes, edges=edges, input=inp, output=out)


def _describe(flat: FlatGraph, name: str) -> str:
    return f"node {name!r} ({type(flat.nodes[name]).__name__})"


def _is_projection_node(flat: FlatGraph, name: str) -> bool:
    """A weight node with one input and one output, neither the graph's I/O."""
    if not isinstance(flat.nodes[name], WEIGHT_NODES):
        return False
    preds, succs = flat.preds(name), flat.succs(name)
    return (
        len(preds) == 1
        and len(succs) == 1
        and preds[0] not in (flat.input, flat.output, name)
        and succs[0] not in (flat.input, flat.output, name)
    )


def _back_edges(flat: FlatGraph) -> set:
    """Edges that close a cycle in a depth-first walk from the input: the one-step delays."""
    back, state = set(), {flat.input: "open"}
    stack = [(flat.input, iter(flat.succs(flat.input)))]
    while stack:
        name, successors = stack[-1]
        nxt = next(successors, None)
        if nxt is None:
            state[name] = "done"
            stack.pop()
        elif state.get(nxt) == "open":
            back.add((name, nxt))
        elif nxt not in state:
            state[nxt] = "open"
            stack.append((nxt, iter(flat.succs(nxt))))
    unreachable = sorted(set(flat.nodes) - set(state))
    if unreachable:
        raise ValueError(
            f"from_nir: {_describe(flat, unreachable[0])} cannot be reached from the input "
            f"node {flat.input!r}."
        )
    return back


def _longest_path(flat: FlatGraph, forward: set) -> list[str]:
    """Longest input-to-output path of the acyclic graph `forward`; ties prefer layers
    over projection-shaped nodes, then names in order."""
    indegree = {name: 0 for name in flat.nodes}
    for _, b in forward:
        indegree[b] += 1
    ready, order = [n for n, d in indegree.items() if d == 0], []
    while ready:
        ready.sort()
        name = ready.pop(0)
        order.append(name)
        for a, b in sorted(forward):
            if a == name:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    length, best = {flat.input: 0}, {}
    for name in order:
        preds = [a for a, b in forward if b == name and a in length]
        if name == flat.input or not preds:
            continue
        top = max(length[a] for a in preds)
        choices = [a for a in preds if length[a] == top]
        best[name] = min(choices, key=lambda a: (_is_projection_node(flat, a), a))
        length[name] = top + 1
    if flat.output not in best:
        raise ValueError(f"from_nir: no path from {flat.input!r} to {flat.output!r}.")
    path = [flat.output]
    while path[-1] != flat.input:
        path.append(best[path[-1]])
    return path[::-1]


def chain(flat: FlatGraph) -> tuple[list[str], list[Projection]]:
    """The layers in order and the projections between them (`Connect`'s `cat`)."""
    forward = flat.edges - _back_edges(flat)
    path = _longest_path(flat, forward)
    layers = path[1:-1]
    if not layers:
        raise ValueError("from_nir: the graph joins its input to its output with no layer.")
    position = {name: k for k, name in enumerate(layers)}
    projections = []
    for name in sorted(set(flat.nodes) - set(path)):
        if not _is_projection_node(flat, name):
            raise ValueError(
                f"from_nir: {_describe(flat, name)} is off the main path from input to "
                f"output and is not a Linear/Affine side connection between two layers; "
                f"eqslax imports a chain of layers with skip and recurrent projections."
            )
        (source,), (target,) = flat.preds(name), flat.succs(name)
        if source not in position or target not in position:
            raise ValueError(
                f"from_nir: {_describe(flat, name)} joins {source!r} to {target!r}; a side "
                f"connection must join two layers of the main path."
            )
        projections.append(Projection(name, position[source], position[target]))
    for a, b in sorted(flat.edges):
        if a in position and b in position and position[b] != position[a] + 1:
            projections.append(Projection(None, position[a], position[b]))
        elif a in position and b in position:
            continue
        elif a == flat.input and b != layers[0]:
            raise ValueError(
                f"from_nir: the input feeds {_describe(flat, b)} as well as the first layer; "
                f"eqslax has no projections from the network input."
            )
        elif b == flat.output and a != layers[-1]:
            raise ValueError(
                f"from_nir: {_describe(flat, a)} feeds the output as well as the last layer "
                f"{layers[-1]!r}; eqslax's output is the last layer's."
            )
    return layers, projections
