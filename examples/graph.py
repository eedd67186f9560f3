"""Look at the graphs: what a model builds when it runs, and the gradient graph backward gives.

What it teaches: calling a model builds a graph of tensors, each remembering its op and its
inputs; loss.backward() returns the gradient graph, a node for every node of that graph,
linked the same way, holding d loss / d (that node). rax.draw prints both side by side, a
node per line, each gradient beside its value; rax.to_dot writes the same as Graphviz DOT.
The model is one sigmoid neuron with a squared error: small enough to read every node.

    python examples/graph.py                   # writes graph.dot in the current folder
    python examples/graph.py --out /tmp/g.dot  # or where you say
    dot -Tsvg graph.dot -o graph.svg           # then, with Graphviz, a picture of both graphs
    python examples/graph.py --plot graph.png  # also the loss curve, if matplotlib is there
"""

import argparse
import os
import sys

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


def make_data():
    """Two points with two features each, and their targets in [0, 1]."""
    x = rax.Tensor([[1.0, 2.0], [3.0, -1.0]])
    y = rax.Tensor([0.0, 1.0])
    return x, y


def init_params():
    """Fixed small weights, so that the picture is the same every run."""
    return {"w": rax.Tensor([0.5, -0.25]), "b": rax.Tensor(0.1)}


def predict(params, x):
    """One neuron: sigmoid(x @ w + b), a probability for each row of x."""
    return rax.sigmoid(x @ params["w"] + params["b"])


def loss(params, x, y):
    """The mean squared error. The error e is used twice in e * e: one node, two uses."""
    error = predict(params, x) - y
    return (error * error).mean()


def graph_nodes(root):
    """Every node of a graph once, found by following .inputs (with a stack: a graph may be
    deep). Tensors and GradNodes both have .inputs, so this walks either graph."""
    seen, stack = {root}, [root]
    while stack:
        for node in stack.pop().inputs:
            if node not in seen:
                seen.add(node)
                stack.append(node)
    return seen


def main(out="graph.dot", steps=60, lr=1.0, verbose=True, plot=None):
    """Draw the graphs, write the DOT file, then train the neuron for a few steps.

    Returns a dict: "drawing" (rax.draw's text), "dot" (the DOT text), "path" (where it was
    written), "n_nodes" and "n_gradient_nodes" (the sizes of both graphs), "losses".
    """
    say = print if verbose else (lambda *args: None)
    x, y = make_data()
    params = init_params()
    value = loss(params, x, y)
    grads = value.backward()
    names = {"w": params["w"], "b": params["b"], "x": x, "y": y}  # names for the leaves

    drawing = rax.draw(value, grads, names=names)
    n_nodes, n_gradient_nodes = len(graph_nodes(value)), len(graph_nodes(grads))
    say("The forward graph, the loss first and each node's inputs below it, with every\n"
        "node's value and, beside it, its gradient d loss / d node (a node used twice is\n"
        "drawn once and then referred to by its number):\n")
    say(drawing)
    say(f"\nThe forward graph has {n_nodes} nodes; the gradient graph, walked through "
        f"GradNode.inputs,\nhas {n_gradient_nodes}: the same shape. grads[w] is "
        f"{[round(v, 4) for v in grads[params['w']].tolist()]} and grads[b] is "
        f"{grads[params['b']].item():.4f}.")

    dot = rax.to_dot(value, grads, names=names)
    with open(out, "w") as file:
        file.write(dot + "\n")
    say(f"\nWrote both graphs as Graphviz DOT to {out}; to see them, run\n"
        f"    dot -Tsvg {out} -o {os.path.splitext(out)[0]}.svg")

    losses = []
    for _ in range(steps):
        value = loss(params, x, y)
        params = rax.sgd(params, value.backward(), lr)
        losses.append(value.item())
    say(f"\n{steps} steps of gradient descent (each step builds the graph anew):\n")
    say(termplot.line_plot(losses, title="squared error", height=10))
    if plot:
        termplot.save_figure(plot, losses, title="squared error")
    return {"drawing": drawing, "dot": dot, "path": out, "n_nodes": n_nodes,
            "n_gradient_nodes": n_gradient_nodes, "losses": losses}


def parse_args(argv=None):
    """The command line: where to write the DOT file, and --plot."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--out", help="the DOT file to write")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
