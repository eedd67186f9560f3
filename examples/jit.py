"""Trace once, run many: one training step of an MLP as a rax Program, compiled to Python.

What it teaches: calling a rax function builds its graph, and the graph of
value_and_grad(loss) holds the forward and the backward pass together. rax.trace keeps
that graph as a Program: a listing to read (one equation per line, as JAX's jaxpr), a
replay that runs the equations on new data, and straight-line Python source, in which
chains of elementwise ops (the bias add and relu after a matmul, the sgd update) are one
comprehension each. rax.jit does the tracing and compiling on the first call. The lesson
prints the program and its source, checks that the compiled step gives the eager step's
floats exactly, and times eager rax, the compiled step and a hand-written step.

    python examples/jit.py
    python examples/jit.py --plot jit.png    # also save the loss curve, if matplotlib is there
"""

import argparse
import math
import os
import random
import sys
import time
from operator import mul

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


def init_params(rng, sizes=(2, 16, 16, 1)):
    """Weights scaled by 1/sqrt(fan_in), zero biases."""
    return [{"w": rax.randn((n, m), rng=rng) / math.sqrt(n), "b": rax.zeros((m,))}
            for n, m in zip(sizes, sizes[1:])]


def predict(params, x):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = rax.relu(h)
    return h


def loss(params, x, y):
    return ((predict(params, x) - y) ** 2).mean()


def step(params, x, y):
    """One step of gradient descent: (loss, new params). No .item() inside: a traced
    function must not read its values (rax.TraceError says so)."""
    value, grads = rax.value_and_grad(loss)(params, x, y)
    return value, rax.sgd(params, grads, 0.1)


def make_data(rng, n):
    """Points in the square and a bumpy surface over them."""
    points = [[rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0)] for _ in range(n)]
    return rax.Tensor(points), rax.Tensor([[math.sin(a) * math.cos(b)] for a, b in points])


def hand_step(params, x, y, lr=0.1):
    """The same step written by hand over nested lists: forward, backward, sgd."""
    (w1, b1), (w2, b2), (w3, b3) = params
    n = len(x)

    def linear(h, w, b):
        columns = list(zip(*w))
        return [[sum(map(mul, row, col)) + c for col, c in zip(columns, b)]
                for row in h]
    z1 = linear(x, w1, b1)
    h1 = [[v if v > 0.0 else 0.0 for v in row] for row in z1]
    z2 = linear(h1, w2, b2)
    h2 = [[v if v > 0.0 else 0.0 for v in row] for row in z2]
    out = linear(h2, w3, b3)
    diff = [[p - t for p, t in zip(prow, trow)] for prow, trow in zip(out, y)]
    value = sum(d * d for row in diff for d in row) / (n * len(out[0]))
    dz = [[2.0 * d / (n * len(out[0])) for d in row] for row in diff]
    grads = []
    for h, w, z in ((h2, w3, z2), (h1, w2, z1), (x, w1, None)):
        dw = [[sum(map(mul, hcol, dcol)) for dcol in zip(*dz)] for hcol in zip(*h)]
        grads.append((dw, [sum(col) for col in zip(*dz)]))
        if z is not None:
            dh = [[sum(map(mul, drow, wrow)) for wrow in w] for drow in dz]
            dz = [[d if v > 0.0 else 0.0 for d, v in zip(drow, zrow)]
                  for drow, zrow in zip(dh, z)]
    grads.reverse()
    return value, [([[p - lr * g for p, g in zip(pr, gr)] for pr, gr in zip(w, dw)],
                    [p - lr * g for p, g in zip(b, db)])
                   for (w, b), (dw, db) in zip(params, grads)]


def median_seconds(f, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(steps=200, n=100, repeats=21, verbose=True, plot=None):
    rng = random.Random(0)
    params = init_params(rng)
    x, y = make_data(rng, n)

    program = rax.trace(step)(params, x, y)
    if verbose:
        print(f"the program of one step: {len(program.equations)} equations\n{program}\n")
        print(f"its Python source:\n{program.source()}")

    fast = rax.jit(step)
    eager_loss, eager_params = step(params, x, y)
    fast_loss, fast_params = fast(params, x, y)
    same = all(a.tolist() == b.tolist()
               for a, b in zip(rax.tree_leaves((eager_loss, eager_params)),
                               rax.tree_leaves((fast_loss, fast_params))))
    if verbose:
        print(f"compiled step == eager step, every float: {same}")

    losses, p = [], params
    for _ in range(steps):
        value, p = fast(p, x, y)
        losses.append(value.item())
    if verbose:
        print(f"loss over {steps} compiled steps: {losses[0]:.4f} -> {losses[-1]:.4f}")
        print(termplot.line_plot(losses, title="loss, compiled steps"))

    lists = [(layer["w"].tolist(), layer["b"].tolist()) for layer in params]
    xl, yl = x.tolist(), y.tolist()
    times = {"eager rax": median_seconds(lambda: step(params, x, y), repeats),
             "rax.jit": median_seconds(lambda: fast(params, x, y), repeats),
             "by hand": median_seconds(lambda: hand_step(lists, xl, yl), repeats)}
    if verbose:
        for name, seconds in times.items():
            print(f"{name:>10}: {seconds * 1e3:7.3f} ms a step")
    if plot:
        termplot.save_figure(plot, losses)
    return {"same": same, "losses": losses, "times": times, "program": program}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help="training steps (default 200)")
    parser.add_argument("--plot", help="also save the loss curve to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
