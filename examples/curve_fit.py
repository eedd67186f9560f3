"""Fit a curve's parameters with a quasi-Newton method (rax.minimize) and with Adam.

What it teaches: for a small smooth problem (here four parameters of a decaying
oscillation, y = a exp(-k t) cos(w t + phi), fitted to 60 noisy samples), a quasi-Newton
method such as BFGS builds a picture of the curvature from the gradients it sees and takes
steps of the right length in the right direction: it converges in a few dozen iterations.
Adam, which scales each coordinate by its own running average, needs thousands of steps for
the same loss. Both use rax's gradients; minimize returns SciPy's fields (x, fun, nit,
nfev, success, message). The terminal plot shows both loss curves against the number of
gradient evaluations, on a log scale; the table compares the fitted parameters with the
true ones, and the time each method took.

    python examples/curve_fit.py
    python examples/curve_fit.py --steps 500 --plot curve_fit.png   # a figure, with matplotlib
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

TRUE = {"a": 2.0, "k": 0.7, "w": 3.0, "phi": 0.3}
START = {"a": 1.0, "k": 0.5, "w": 2.8, "phi": 0.0}


def make_data(n=60, noise=0.05, seed=0):
    """n samples of the true curve on [0, 4], with Gaussian noise."""
    rng = random.Random(seed)
    ts = [4.0 * i / (n - 1) for i in range(n)]
    ys = [TRUE["a"] * math.exp(-TRUE["k"] * t) * math.cos(TRUE["w"] * t + TRUE["phi"])
          + rng.gauss(0.0, noise) for t in ts]
    return rax.Tensor(ts), rax.Tensor(ys)


def predict(params, t):
    """a exp(-k t) cos(w t + phi), the model."""
    return params["a"] * rax.exp(-params["k"] * t) * rax.cos(params["w"] * t + params["phi"])


def loss(params, t, y):
    """The mean squared error of the model on the samples."""
    return ((predict(params, t) - y) ** 2).mean()


def start_params():
    return {name: rax.Tensor(value) for name, value in START.items()}


def fit_bfgs(t, y):
    """(params, the loss after each iteration, seconds): rax.minimize with BFGS."""
    losses = [loss(start_params(), t, y).item()]
    started = time.perf_counter()
    res = rax.minimize(loss, start_params(), args=(t, y), method="BFGS",
                       callback=lambda p: losses.append(loss(p, t, y).item()))
    seconds = time.perf_counter() - started
    if not res.success:
        raise RuntimeError(f"BFGS did not converge: {res.message}")
    return res.x, losses, res, seconds


def fit_adam(t, y, steps):
    """(params, the loss at each step, seconds): Adam with a cosine-decayed learning rate,
    the value and gradient compiled once (rax.jit)."""
    value_and_grad = rax.jit(rax.value_and_grad(loss))
    opt = rax.Adam(lr=rax.cosine_decay_schedule(0.05, steps, alpha=0.01))
    params, losses = start_params(), []
    started = time.perf_counter()
    for _ in range(steps):
        value, grads = value_and_grad(params, t, y)
        losses.append(value.item())
        params = opt.update(params, grads)
    losses.append(loss(params, t, y).item())
    return params, losses, time.perf_counter() - started


def main(steps=2000, verbose=True, plot=None):
    """Fit by BFGS and by Adam; returns both final losses, BFGS's result and the params."""
    say = print if verbose else (lambda *args: None)
    t, y = make_data()
    bfgs_params, bfgs_losses, res, bfgs_seconds = fit_bfgs(t, y)
    adam_params, adam_losses, adam_seconds = fit_adam(t, y, steps)
    say(f"BFGS: {res.nit} iterations, {res.nfev} evaluations, {bfgs_seconds:.2f} s: "
        f"loss {res.fun:.6g} ({res.message})")
    say(f"Adam: {steps} steps, {adam_seconds:.2f} s: loss {adam_losses[-1]:.6g}")
    say(f"\n   {'':6} {'true':>8} {'BFGS':>10} {'Adam':>10}")
    for name, value in TRUE.items():
        say(f"   {name:6} {value:8.4f} {bfgs_params[name].item():10.4f} "
            f"{adam_params[name].item():10.4f}")
    # The loss above the best either reached, over the first 100 iterations / steps: BFGS
    # is at the float64 floor within a few dozen, Adam still on its way.
    best = min(bfgs_losses + adam_losses)
    curves = {"BFGS": [v - best for v in bfgs_losses[:100]],
              "Adam": [v - best for v in adam_losses[:100]]}
    say()
    say(termplot.line_plot(curves, height=14, log_scale=True, x_label="iteration / step",
                           title="loss above the best (log scale), the first 100"))
    if plot:
        termplot.save_figure(plot, curves, title="loss above the best", log_scale=True,
                             x_label="iteration / step")
    return {"bfgs_loss": res.fun, "adam_loss": adam_losses[-1], "bfgs": res,
            "bfgs_params": bfgs_params, "adam_params": adam_params}


def parse_args(argv=None):
    """The command line: Adam's number of steps, and --plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help="Adam's steps")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
