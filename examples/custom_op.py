"""Write your own primitive op with its own gradient rule, test it, and see a bad rule caught.

What it teaches: rax.primitive(name, forward, vjps) makes a new op from a forward function
and one vector-Jacobian rule per input, exactly like rax's own ops. The op here is
softplus(x) = log(1 + exp(x)). Written with rax's ops as that formula, it overflows:
softplus(1000) is inf and its gradient nan. As a primitive, the forward pass can use a
stable formula in plain Python, and the rule can say directly that the derivative is
sigmoid(x). Then:

1. property tests with hypothesis (when it is installed; skipped with a note otherwise)
   compare the op with math.log1p(math.exp(x)) and its gradient with the sigmoid;
2. rax.check_grads compares the rule with central differences, including the rule's own
   derivative (the rule is written with rax ops, so grad(grad(softplus)) works);
3. a rule with a bug, on purpose, fails check_grads, whose message names the guilty op
   and the file and line where its rule is written.

    python examples/custom_op.py
    python examples/custom_op.py --plot softplus.png    # a figure, if matplotlib is there
"""

import argparse
import math
import os
import sys
import tempfile
import textwrap

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


# ---- the op --------------------------------------------------------------------------------

def map_nested(fn, data):
    """fn applied to every number of a nested list (a tensor's .data)."""
    return [map_nested(fn, row) for row in data] if isinstance(data, list) else fn(data)


def stable_softplus(v):
    """log(1 + e^v) for one float, as max(v, 0) + log1p(e^-|v|): exp never sees a large
    positive number, and log1p keeps the digits of a tiny e^-|v|. inf gives inf, nan nan."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def softplus_forward(x):
    """The forward pass in plain Python over the nested lists; rax makes them a tensor."""
    return map_nested(stable_softplus, x.data)


def softplus_vjp(g, out, x):
    """d/dx softplus(x) = sigmoid(x), written with rax ops so that it is differentiable."""
    return g * rax.sigmoid(x)


softplus = rax.primitive("softplus", softplus_forward, [softplus_vjp])


def naive_softplus(x):
    """The same function composed of rax ops: right in the middle, inf and nan far out."""
    return rax.log(1.0 + rax.exp(x))


def buggy_softplus_vjp(g, out, x):
    """A plausible slip, made on purpose: sigmoid(-x) is the derivative of softplus(-x)."""
    return g * rax.sigmoid(-x)


buggy_softplus = rax.primitive("buggy_softplus", softplus_forward, [buggy_softplus_vjp])


# ---- a small model that uses it ------------------------------------------------------------

def init_params(seed=0):
    """A layer of 3 inputs and 4 softplus units."""
    return {"w": rax.randn((3, 4), rng=seed), "b": rax.randn((4,), rng=seed + 1)}


def model_loss(w, b, x, activation):
    """The mean square of a softplus layer's output: a few ops around the activation, so
    that check_grads has to find the guilty one among them."""
    h = activation(x @ w + b)
    return (h * h).mean()


# ---- the checks ----------------------------------------------------------------------------

def derivative(op, x):
    """d op / dx at the number x, by rax's backward pass."""
    return rax.grad(op)(x).item()


def property_tests(n_examples, say=print):
    """Hypothesis property tests of softplus; returns how many properties passed, or None
    (after a note) when hypothesis is not installed. `say` prints the progress."""
    try:
        from hypothesis import given, settings, strategies as st
    except ImportError:
        say("   hypothesis is not installed (pip install hypothesis): property tests skipped")
        return None
    # database=None: keep no record of failing examples in the folder the lesson runs in.
    run = settings(max_examples=n_examples, deadline=None, database=None)
    moderate = st.floats(-30.0, 30.0)  # where math.log1p(math.exp(x)) is a fair reference

    @run
    @given(moderate)
    def matches_the_formula(x):
        assert math.isclose(softplus(x).item(), math.log1p(math.exp(x)), rel_tol=1e-12)

    @run
    @given(moderate)
    def derivative_is_the_sigmoid(x):
        assert math.isclose(derivative(softplus, x), 1.0 / (1.0 + math.exp(-x)),
                            rel_tol=1e-12, abs_tol=1e-300)

    @run
    @given(st.floats(-1e300, 1e300))
    def softplus_x_minus_softplus_minus_x_is_x(x):
        difference = softplus(x).item() - softplus(-x).item()
        assert math.isclose(difference, x, rel_tol=1e-15, abs_tol=1e-15)  # even far out

    @run
    @given(st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=4))
    def passes_check_grads_to_second_order(values):
        x = rax.Tensor(values)
        rax.check_grads(lambda x: softplus(x).sum(), (x,))
        rax.check_grads(lambda x: (rax.grad(lambda x: softplus(x).sum())(x) ** 2).sum(), (x,))

    tests = (matches_the_formula, derivative_is_the_sigmoid,
             softplus_x_minus_softplus_minus_x_is_x, passes_check_grads_to_second_order)
    for test in tests:
        test()
        say(f"   ok: {test.__name__.replace('_', ' ')} ({n_examples} examples)")
    return len(tests)


def main(n_examples=100, verbose=True, plot=None):
    """Compare, test and break softplus; returns the message of the failed check_grads."""
    say = print if verbose else (lambda *args: None)
    say("softplus(x) = log(1 + exp(x)) and its derivative, composed of rax ops and as a "
        "primitive:")
    say(f"   {'x':>7} {'composed':>12} {'primitive':>12} {'d composed':>12} {'d primitive':>12}")
    for v in (-1000.0, -30.0, 0.0, 2.0, 30.0, 1000.0):
        say(f"   {v:7g} {naive_softplus(v).item():12.6g} {softplus(v).item():12.6g} "
            f"{derivative(naive_softplus, v):12.6g} {derivative(softplus, v):12.6g}")

    say("\n1. property tests with hypothesis:")
    property_tests(n_examples, say)

    params = init_params()
    x = rax.randn((5, 3), rng=2)
    rax.check_grads(lambda w, b: model_loss(w, b, x, softplus), (params["w"], params["b"]))
    say("\n2. check_grads: the model with softplus passes.")

    say("\n3. check_grads on the same model with a wrong rule:")
    try:
        rax.check_grads(lambda w, b: model_loss(w, b, x, buggy_softplus),
                        (params["w"], params["b"]))
    except AssertionError as error:
        message = str(error)
    else:
        raise RuntimeError("check_grads should have caught buggy_softplus_vjp")
    for paragraph in message.split("\n"):
        say(textwrap.fill(paragraph, width=96, initial_indent="   ", subsequent_indent="   "))

    grid = [-6.0 + 12.0 * i / 120 for i in range(121)]
    curves = {"softplus(x)": [softplus(v).item() for v in grid],
              "d/dx, by its rule": [derivative(softplus, v) for v in grid]}
    say()
    say(termplot.line_plot(curves, height=14, x_label="x", x_range=(grid[0], grid[-1])))
    if plot:
        termplot.save_figure(plot, curves, title="softplus and its derivative", x_label="x",
                             x_range=(grid[0], grid[-1]))
    return message


def parse_args(argv=None):
    """The command line: how many examples per property test, and --plot."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--n-examples", type=int, help="hypothesis examples per property")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Hypothesis keeps a cache in ./.hypothesis; a lesson run from any folder should leave
    # nothing behind, so the cache goes to a temporary folder unless one was chosen.
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", cache)
        main(**vars(parse_args()))
