"""Per-example gradients with vmap, and a recurrent network with scan.

What it teaches: JAX's transformations compose, and rax has them too.
- rax.vmap(rax.grad(loss), in_axes=(None, 0, 0)) gives the gradient of the loss at each
  example of a batch (for gradient clipping per example, or to find the examples that pull
  hardest), written for one example and run on the whole batch at once: vmap traces the
  function once and runs each op batched. The same numbers come from a Python loop of
  rax.grad, example by example; the lesson checks it and times both.
- rax.scan(cell, h0, xs) runs a recurrent cell over a sequence, carrying its state, as
  jax.lax.scan: an RNN learns to predict the next value of a noisy sine wave, trained with
  the value and the gradient compiled once (rax.jit of rax.value_and_grad).

    python examples/transforms.py
    python examples/transforms.py --steps 100
"""

import argparse
import math
import os
import random
import sys
import time

# rax.py sits one folder up: put it first on the path (`python -I` leaves even this file's
# folder off it), so that nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


# ---- per-example gradients of an MLP --------------------------------------------------------

def mlp(params, x):
    """A 2-16-16-1 MLP with ReLU on one example x of shape (2,) or a batch (n, 2)."""
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            x = rax.relu(x)
    return x


def loss(params, x, y):
    """The squared error of one example (or the mean over a batch)."""
    return ((mlp(params, x) - y) ** 2).mean()


def init_mlp(rng, sizes):
    return [{"w": rax.Tensor([[rng.gauss(0.0, 1.0 / math.sqrt(m)) for _ in range(n)]
                              for _ in range(m)]),
             "b": rax.zeros((n,))} for m, n in zip(sizes, sizes[1:])]


def gradient_norms(params, x, y):
    """The norm of each example's gradient, by vmap of grad and by a loop; and the seconds
    each took."""
    started = time.perf_counter()
    per_example = rax.vmap(rax.grad(loss), in_axes=(None, 0, 0))(params, x, y)
    norms = rax.sqrt(sum((g ** 2).reshape((len(x), -1)).sum(axis=1)
                         for g in rax.tree_leaves(per_example)))
    vmap_seconds = time.perf_counter() - started
    started = time.perf_counter()
    looped = []
    for i in range(len(x)):
        grads = rax.grad(loss)(params, x[i], y[i])
        looped.append(math.sqrt(sum((g ** 2).sum().item() for g in rax.tree_leaves(grads))))
    loop_seconds = time.perf_counter() - started
    return norms.tolist(), looped, vmap_seconds, loop_seconds


# ---- an RNN over a sequence, with scan ------------------------------------------------------

def rnn_predictions(params, xs):
    """h_t = tanh(h_{t-1} @ wh + x_t * wx + b), prediction_t = h_t @ wo: scan carries h."""
    def cell(h, x):
        h = rax.tanh(h @ params["wh"] + x * params["wx"] + params["b"])
        return h, (h @ params["wo"]).sum()
    _, predictions = rax.scan(cell, rax.zeros((params["wh"].shape[0],)), xs)
    return predictions


def rnn_loss(params, xs, targets):
    return ((rnn_predictions(params, xs) - targets) ** 2).mean()


def init_rnn(rng, hidden):
    def normal(*shape, scale):
        return rax.Tensor([[rng.gauss(0.0, scale) for _ in range(shape[1])]
                           for _ in range(shape[0])]) if len(shape) == 2 else rax.Tensor(
            [rng.gauss(0.0, scale) for _ in range(shape[0])])
    return {"wh": normal(hidden, hidden, scale=0.3), "wx": normal(hidden, scale=1.0),
            "b": rax.zeros((hidden,)), "wo": normal(hidden, scale=0.3)}


def sine_wave(rng, length):
    """A noisy sine wave: the inputs and, one step ahead, the targets."""
    wave = [math.sin(0.3 * t) + rng.gauss(0.0, 0.05) for t in range(length + 1)]
    return rax.Tensor(wave[:-1]), rax.Tensor(wave[1:])


def train_rnn(rng, steps, hidden=8, length=30):
    """Adam on the RNN, value and gradient compiled once: the losses, and the loss's
    program (the scan one equation, its body a program of its own, printed nested)."""
    params = init_rnn(rng, hidden)
    xs, targets = sine_wave(rng, length)
    value_and_grad = rax.jit(rax.value_and_grad(rnn_loss))
    opt, losses = rax.Adam(lr=0.02), []
    for _ in range(steps):
        value, grads = value_and_grad(params, xs, targets)
        losses.append(value.item())
        params = opt.update(params, grads)
    return losses, rax.trace(rnn_loss)(params, xs, targets)


def main(steps=60, n=100, verbose=True, plot=None):
    """Per-example gradient norms (vmap against a loop), then the RNN; returns what it
    printed as numbers."""
    say = print if verbose else (lambda *args: None)
    rng = random.Random(0)
    params = init_mlp(rng, (2, 16, 16, 1))
    x = rax.Tensor([[rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0)] for _ in range(n)])
    y = rax.Tensor([[math.sin(a) * math.cos(b)] for a, b in x.tolist()])
    norms, looped, vmap_seconds, loop_seconds = gradient_norms(params, x, y)
    worst = max(abs(a - b) for a, b in zip(norms, looped))
    say(f"per-example gradient norms of {n} examples: vmap(grad) {vmap_seconds * 1e3:.1f} ms, "
        f"a loop of grad {loop_seconds * 1e3:.1f} ms; largest difference {worst:.1e}")
    hardest = sorted(range(n), key=norms.__getitem__)[-3:][::-1]
    say("the examples that pull hardest: " + ", ".join(
        f"#{i} (norm {norms[i]:.3f})" for i in hardest))
    losses, program = train_rnn(rng, steps)
    say(f"\nRNN over 30 steps of a noisy sine wave, {steps} Adam steps: loss "
        f"{losses[0]:.4f} -> {losses[-1]:.4f}. Its loss as a program, the scan one "
        f"equation whatever the length of the sequence:\n{program}\n")
    say(termplot.line_plot(losses, height=10, x_label="step", title="RNN loss"))
    if plot:
        termplot.save_figure(plot, losses, title="RNN loss", x_label="step")
    return {"norms": norms, "looped": looped, "losses": losses,
            "vmap_seconds": vmap_seconds, "loop_seconds": loop_seconds}


def parse_args(argv=None):
    """The command line: the RNN's training steps, the batch size, and --plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help="Adam steps of the RNN")
    parser.add_argument("--n", type=int, help="examples for the per-example gradients")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
