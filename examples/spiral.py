"""Classify the points of a three-armed spiral: softmax and cross-entropy over 3 classes.

What it teaches: multi-class classification. The network gives each point one score
(logit) per class; softmax turns the scores into probabilities that sum to 1; the loss is
the cross-entropy, minus the log-probability of the true class, averaged over the points.
rax.log_softmax computes those log-probabilities without overflow, and rax.one_hot picks
the true class's. No straight line separates the arms, so the network needs its hidden
layer of relu units; the terminal picture shows the curved regions it learns.

    python examples/spiral.py
    python examples/spiral.py --plot spiral.png    # also save a figure, if matplotlib is there
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

N_CLASSES = 3


def make_spiral(n_per_class, noise=0.2, seed=0):
    """Points on N_CLASSES spiral arms winding out from the centre; the label is the arm.

    Arm k starts at angle 2 pi k / N_CLASSES and turns by 4.5 radians (0.7 of a turn) as
    the radius grows from 0 to 1; noise jitters the angle.
    """
    rng = random.Random(seed)
    points, labels = [], []
    for arm in range(N_CLASSES):
        for i in range(n_per_class):
            radius = (i + 1) / n_per_class
            angle = 2.0 * math.pi * arm / N_CLASSES + 4.5 * radius + rng.gauss(0.0, noise)
            points.append([radius * math.sin(angle), radius * math.cos(angle)])
            labels.append(arm)
    return rax.Tensor(points), labels


def init_params(hidden=32, seed=0):
    """One hidden layer: weights scaled by 1/sqrt(fan_in) (a relu layer's scale is then
    stable), zero biases."""
    return {"w0": rax.randn((2, hidden), rng=seed) * (1.0 / math.sqrt(2)),
            "b0": rax.zeros((hidden,)),
            "w1": rax.randn((hidden, N_CLASSES), rng=seed + 1) * (1.0 / math.sqrt(hidden)),
            "b1": rax.zeros((N_CLASSES,))}


def predict(params, x):
    """The logits, shape (n, N_CLASSES): a relu hidden layer, then a linear one."""
    h = rax.relu(x @ params["w0"] + params["b0"])
    return h @ params["w1"] + params["b1"]


def loss(params, x, y):
    """Cross-entropy: the mean over points of -log(softmax(logits)[true class])."""
    log_probs = rax.log_softmax(predict(params, x), axis=1)  # each row: log-probabilities
    return -(log_probs * rax.one_hot(y, N_CLASSES)).sum(axis=1).mean()


def classify(params, x):
    """The predicted class of each point: the index of its largest logit."""
    return [row.index(max(row)) for row in predict(params, x).tolist()]


def accuracy(params, x, y):
    """The fraction of points classified as their arm (a mean of bools, as in NumPy)."""
    return (rax.argmax(predict(params, x), axis=1) == rax.Tensor(y)).mean().item()


def main(n_per_class=60, steps=200, lr=0.05, hidden=32, seed=0, verbose=True, plot=None):
    """Train with Adam on the whole spiral; returns (first loss, last loss, accuracy)."""
    x, y = make_spiral(n_per_class, seed=seed)
    params = init_params(hidden, seed=seed)
    opt = rax.Adam(lr=lr)
    losses = []
    for step in range(steps):
        value = loss(params, x, y)
        params = opt.update(params, value.backward())
        losses.append(value.item())
        if verbose and (step % 25 == 0 or step == steps - 1):
            print(f"step {step:4d}   loss {value.item():.4f}")
    acc = accuracy(params, x, y)

    def classify_points(points):  # the trained model, as the plots want it
        return classify(params, rax.Tensor(points))

    if verbose:
        probs = rax.softmax(predict(params, x[:1]), axis=1).tolist()[0]
        print(f"\nthe first point (arm {y[0]}) gets the probabilities "
              f"{', '.join(f'{p:.3f}' for p in probs)} (they sum to 1)")
        print(f"training accuracy: {acc:.1%} ({len(y)} points, chance is "
              f"{1 / N_CLASSES:.0%})\n")
        print(termplot.line_plot(losses, title="cross-entropy loss (log scale)", log_scale=True))
        print()
        print(termplot.decision_boundary(classify_points, x, y, width=60, height=26,
                                         title="the learned regions, with the three arms"))
    if plot:
        termplot.save_figure(plot, losses, title="cross-entropy loss", log_scale=True,
                             boundary=(classify_points, x, y))
    return losses[0], losses[-1], acc


def parse_args(argv=None):
    """The command line: sizes and --plot, named like main's keyword arguments."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--n-per-class", type=int, help="points on each arm")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--hidden", type=int, help="hidden units")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
