"""Train a small neural network to separate two interleaved half-moons.

What it teaches: the whole rax loop. A model is a pure function of its params; calling it
builds a graph; loss.backward() gives the gradient graph; an optimizer turns params and
gradients into new params. The data come from the standard library, so this runs on a
fresh clone with nothing installed, and ends with the loss curve and the decision regions
drawn in the terminal:

    python examples/moons.py
    python examples/moons.py --plot moons.png    # also save a figure, if matplotlib is there
"""

import argparse
import math
import os
import random
import sys

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


def make_moons(n, noise=0.15, seed=0):
    """n points on two interleaved half-circles, with Gaussian noise; labels 0 and 1."""
    rng = random.Random(seed)
    points, labels = [], []
    for i in range(n):
        t = math.pi * rng.random()
        if i % 2 == 0:  # the upper moon
            x, y = math.cos(t), math.sin(t)
        else:  # the lower moon, shifted right and down
            x, y = 1.0 - math.cos(t), 0.5 - math.sin(t)
        points.append([x + rng.gauss(0.0, noise), y + rng.gauss(0.0, noise)])
        labels.append(i % 2)
    return rax.Tensor(points), labels


def init_params(sizes=(2, 16, 16, 2), seed=0):
    """Weights scaled by 1/sqrt(fan_in), zero biases: a dict of Tensors."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        params[f"w{i}"] = rax.randn((n_in, n_out), rng=seed + i) * (1.0 / math.sqrt(n_in))
        params[f"b{i}"] = rax.zeros((n_out,))
    return params


def predict(params, x):
    """Class scores (logits), one row per point: tanh hidden layers, a linear output."""
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n_layers - 1:
            h = rax.tanh(h)
    return h


def loss(params, x, y):
    """Mean cross-entropy of the softmax of the logits against the labels y."""
    log_probs = rax.log_softmax(predict(params, x), axis=1)
    return -(log_probs * rax.one_hot(y, 2)).sum(axis=1).mean()


def classify(params, x):
    """The predicted class of each point: the index of its larger logit."""
    return [row.index(max(row)) for row in predict(params, x).tolist()]


def accuracy(params, x, y):
    """The fraction of points whose larger logit is their label (a mean of bools, as in
    NumPy: == compares elementwise)."""
    return (rax.argmax(predict(params, x), axis=1) == rax.Tensor(y)).mean().item()


def main(n_points=200, steps=150, lr=0.05, seed=0, verbose=True, plot=None):
    """Train with Adam on the full data set; returns (first loss, last loss, accuracy).

    With verbose, the loss curve and the decision regions are drawn in the terminal; `plot`
    is a file name for the same as a figure (saved only if matplotlib is installed).
    """
    x, y = make_moons(n_points, seed=seed)
    params = init_params(seed=seed)
    opt = rax.Adam(lr=lr)
    losses = []
    for step in range(steps):
        value = loss(params, x, y)
        params = opt.update(params, value.backward())
        losses.append(value.item())
        if verbose and (step % 15 == 0 or step == steps - 1):
            print(f"step {step:4d}   loss {value.item():.4f}")
    acc = accuracy(params, x, y)

    def classify_points(points):  # the trained model, as the plots want it
        return classify(params, rax.Tensor(points))

    if verbose:
        print(f"training accuracy: {acc:.1%}\n")
        print(termplot.line_plot(losses, title="cross-entropy loss (log scale)", log_scale=True))
        print()
        print(termplot.decision_boundary(classify_points, x, y,
                                         title="what the network learned (o, x: the moons)"))
    if plot:
        termplot.save_figure(plot, losses, title="cross-entropy loss", log_scale=True,
                             boundary=(classify_points, x, y))
    return losses[0], losses[-1], acc


def parse_args(argv=None):
    """The command line: sizes and --plot, named like main's keyword arguments."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--n-points", type=int, help="size of the data set")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
