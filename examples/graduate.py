"""Graduate: a model trained in rax goes on training as NumPy, JAX or PyTorch code.

What it teaches: a rax program is not tied to rax. rax.trace keeps one training step (the
forward pass, the backward pass and the SGD update) as a Program, and program.source(backend)
writes it as code for another library: one statement per equation, over that library's
float64 arrays. The lesson trains a small classifier in rax for a few steps, hands the
params to the compiled NumPy step (and to JAX and PyTorch, when they are installed), trains
on there, and compares, step by step, every library's losses with rax's own: it prints
the largest relative difference (about 1e-15). It prints the NumPy source and the median
time of a step in each library. rax itself
never imports any of them: only the generated code does.

    python examples/graduate.py
    python examples/graduate.py --plot graduate.png   # also save the loss curves (matplotlib)
"""

import argparse
import math
import os
import random
import sys
import time

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


def init_params(rng, sizes=(2, 32, 3)):
    """Weights scaled by 1/sqrt(fan_in), zero biases."""
    return [{"w": rax.randn((n, m), rng=rng) / math.sqrt(n), "b": rax.zeros((m,))}
            for n, m in zip(sizes, sizes[1:])]


def predict(params, x):
    h = rax.tanh(x @ params[0]["w"] + params[0]["b"])
    return h @ params[1]["w"] + params[1]["b"]


def loss(params, x, labels):
    """Softmax cross-entropy: labels are one-hot rows."""
    return -(rax.log_softmax(predict(params, x), axis=1) * labels).sum(axis=1).mean()


def step(params, x, labels):
    value, grads = rax.value_and_grad(loss)(params, x, labels)
    return value, rax.sgd(params, grads, 0.5)


def make_data(rng, n):
    """Three classes of points: which third of the circle each point's angle falls in."""
    points, classes = [], []
    for _ in range(n):
        angle, radius = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.5, 1.5)
        points.append([radius * math.cos(angle), radius * math.sin(angle)])
        classes.append(int(angle / (2.0 * math.pi / 3.0)) % 3)
    return rax.Tensor(points), rax.one_hot(classes, 3)


def libraries():
    """The backends whose library is installed here."""
    found = []
    for backend, module in (("numpy", "numpy"), ("jax", "jax"), ("torch", "torch")):
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(backend)
    return found


def as_float(value):
    """A loss from any library (a 0-d array or tensor) as a Python float."""
    return float(value.tolist() if hasattr(value, "tolist") else value)


def main(rax_steps=20, more_steps=30, n=60, verbose=True, plot=None):
    rng = random.Random(0)
    params = init_params(rng)
    x, labels = make_data(rng, n)
    say = print if verbose else (lambda *args, **kwargs: None)

    losses = []
    for _ in range(rax_steps):  # first, rax alone
        value, params = step(params, x, labels)
        losses.append(value.item())
    say(f"rax: {rax_steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    reference, p = [], params  # rax carries on too, to compare with
    for _ in range(more_steps):
        value, p = step(p, x, labels)
        reference.append(value.item())

    program = rax.trace(step)(params, x, labels)
    curves, worst, times = {"rax": losses + reference}, {}, {}
    found = libraries()
    if not found:
        say("NumPy, JAX and PyTorch are not installed here: nothing to graduate to "
            "(pip install numpy)")
    for backend in found:
        compiled = program.compile(backend)
        if backend == "numpy" and verbose:
            say(f"\nthe step as NumPy code:\n{program.source('numpy')}")
        p, mine, seconds = params, [], []  # rax tensors in, that library's arrays after
        for _ in range(more_steps):
            start = time.perf_counter()
            value, p = compiled(p, x, labels)
            seconds.append(time.perf_counter() - start)
            mine.append(as_float(value))
        times[backend] = sorted(seconds)[len(seconds) // 2]  # median: JAX compiles at first
        worst[backend] = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(mine, reference))
        curves[backend] = losses + mine
        say(f"{backend:>5}: {more_steps} more steps, loss {mine[0]:.4f} -> {mine[-1]:.4f}, "
            f"{times[backend] * 1e3:.3f} ms a step, largest relative difference from rax "
            f"{worst[backend]:.1e}")
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        step(params, x, labels)
        seconds.append(time.perf_counter() - start)
    times["rax"] = sorted(seconds)[2]
    say(f"  rax: {times['rax'] * 1e3:.3f} ms a step")
    say(termplot.line_plot(curves["rax"], title="loss (rax; each library's is the same)"))
    if plot:
        termplot.save_figure(plot, curves["rax"], title="loss")
    return {"losses": curves, "worst": worst, "times": times, "program": program}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--more-steps", dest="more_steps", type=int,
                        help="steps after graduating (default 30)")
    parser.add_argument("--plot", help="also save the loss curve to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
