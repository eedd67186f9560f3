"""Test a gradient you derived by hand against rax, over thousands of random inputs.

What it teaches: you wrote a vector-Jacobian product (vjp) by hand, for a NumPy kernel, a C
extension or a paper's formula, and want to know it is right. rax.testing gives you what
rax's own tests use: hypothesis strategies for tensors of any rank (sides of 0 included),
and check_vjp, which compares your rule with rax's reverse mode of the same function and,
when they differ, says where, and whether rax's own gradient agrees with central
differences (so that you know which side is wrong).

The function is a dense layer, f(x, w) = tanh(x @ w), with x of shape (batch, n) and w of
shape (n, m). By hand: with out = f(x, w) and g the cotangent of out,
    d = g * (1 - out ** 2),   d/dx = d @ w^T,   d/dw = x^T @ d.
Then a mistake is planted (1 - out instead of 1 - out ** 2), and check_vjp's message shows
how it is caught.

    python examples/hand_gradients.py
    python examples/hand_gradients.py --n-examples 500
"""

import argparse
import os
import random
import sys
import tempfile
import textwrap

# rax.py sits one folder up: put it first on the path (`python -I` leaves even this file's
# folder off it), so that nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
from rax import testing as rt  # noqa: E402


def dense(x, w):
    """tanh(x @ w): x (batch, n), w (n, m) -> (batch, m)."""
    return rax.tanh(x @ w)


def dense_vjp(g, x, w):
    """The hand-derived vjp of dense: (d/dx, d/dw) contracted with the cotangent g."""
    out = dense(x, w)
    d = g * (1.0 - out ** 2)
    return d @ w.T, x.T @ d


def dense_vjp_with_a_mistake(g, x, w):
    """The same, with the derivative of tanh written 1 - tanh instead of 1 - tanh ** 2."""
    d = g * (1.0 - dense(x, w))
    return d @ w.T, x.T @ d


def property_test(n_examples, say=print):
    """check_vjp of the hand rule on random shapes and values drawn by hypothesis (or, when
    it is not installed, on n_examples random draws of the standard library's random)."""
    try:
        from hypothesis import given, settings, strategies as st
    except ImportError:
        rng = random.Random(0)
        for _ in range(n_examples):
            batch, n, m = rng.randint(0, 4), rng.randint(1, 4), rng.randint(1, 3)
            x, w = rax.randn((batch, n), rng=rng), rax.randn((n, m), rng=rng)
            rt.check_vjp(dense, dense_vjp, (x, w))
        say(f"   ok: {n_examples} random draws (hypothesis is not installed)")
        return

    @settings(max_examples=n_examples, deadline=None, database=None)
    @given(st.data())
    def hand_vjp_matches_rax(data):
        batch, n, m = (data.draw(st.integers(lo, hi)) for lo, hi in ((0, 4), (1, 4), (1, 3)))
        values = rt.floats(-3.0, 3.0)
        x = data.draw(rt.tensors(shape=(batch, n), elements=values))
        w = data.draw(rt.tensors(shape=(n, m), elements=values))
        rt.check_vjp(dense, dense_vjp, (x, w))
    hand_vjp_matches_rax()
    say(f"   ok: the hand vjp matches rax's on {n_examples} hypothesis examples")


def main(n_examples=100, verbose=True, plot=None):
    """Test the hand rule, then the planted mistake; returns check_vjp's message for it."""
    say = print if verbose else (lambda *args: None)
    say("dense(x, w) = tanh(x @ w), and its vjp derived by hand:")
    say("\n1. check_vjp over random shapes and values:")
    property_test(n_examples, say)

    say("\n2. check_vjp with a mistake planted in the rule (1 - out for 1 - out ** 2):")
    x, w = rax.randn((3, 4), rng=1), rax.randn((4, 2), rng=2)
    try:
        rt.check_vjp(dense, dense_vjp_with_a_mistake, (x, w))
    except AssertionError as error:
        message = str(error)
    else:
        raise RuntimeError("check_vjp should have caught the planted mistake")
    say(textwrap.fill(message, width=96, initial_indent="   ", subsequent_indent="   "))
    if plot:
        say("\n(this lesson draws no figure)")
    return message


def parse_args(argv=None):
    """The command line: how many examples for the property test, and --plot (unused)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--n-examples", type=int, help="hypothesis examples")
    parser.add_argument("--plot", metavar="FILE.png", help="(this lesson draws no figure)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Hypothesis keeps a cache in ./.hypothesis; a lesson run from any folder should leave
    # nothing behind, so the cache goes to a temporary folder unless one was chosen.
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", cache)
        main(**vars(parse_args()))
