"""Newton's method with second derivatives from rax, against plain gradient descent.

What it teaches: gradients in rax are themselves differentiable, so derivatives of any
order come from grad alone.

1. In one dimension, grad(grad(f)) is f''. Newton's step x <- x - f'(x) / f''(x) jumps to
   the minimum of the parabola that fits f at x. For f(x) = x^3/3 - 2x it is the old
   Babylonian rule for sqrt(2), and the number of correct digits doubles at every step.
2. In several dimensions the Hessian is a matrix, but Newton's step only needs products
   H v, and a Hessian-vector product is the gradient of <grad f(x), v>: one more grad,
   never the whole matrix. Newton-CG solves H d = -grad f with conjugate gradients, which
   use nothing but such products. On a smooth 2-D function (Boyd and Vandenberghe,
   Convex Optimization, eq. 9.20) it takes a handful of steps where gradient descent, with
   the same line search, takes several times as many. With rax.hessian the whole matrix
   comes at once, for plain Newton steps, and rax.hvp gives H v by forward mode.
3. A Jacobian is m rows (one vjp each: reverse mode) or n columns (one jvp each: forward
   mode). For a wide one (many inputs, few outputs) rows are cheap; for a tall one, columns.
   rax.jacobian picks whichever are fewer; the lesson times both ways on both shapes.

    python examples/newton.py
    python examples/newton.py --plot newton.png    # also save a figure, if matplotlib is there
"""

import argparse
import math
import os
import sys
import time

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402


# ---- 1. One dimension: f'' is grad(grad(f)) ------------------------------------------------

def cubic(x):
    """x^3 / 3 - 2x: its minimum for x > 0 is at sqrt(2), where f'(x) = x^2 - 2 = 0."""
    return x ** 3 / 3.0 - 2.0 * x


def newton_1d(f, x, tol=1e-10, max_steps=50):
    """Newton's method for a minimum of f from x; returns the list of iterates.

    Each step divides f' by f'', both computed by rax: grad(f) and grad(grad(f)).
    """
    first, second = rax.grad(f), rax.grad(rax.grad(f))
    iterates = [x]
    for _ in range(max_steps):
        step = (first(x) / second(x)).item()  # .item(): the next x is a plain number again
        x = x - step
        iterates.append(x)
        if abs(step) <= tol * abs(x):
            break
    return iterates


# ---- 2. Several dimensions: Hessian-vector products ----------------------------------------

def boyd(x):
    """f(x) = exp(x0 + 3 x1 - 0.1) + exp(x0 - 3 x1 - 0.1) + exp(-x0 - 0.1): smooth, convex,
    stretched along x1; its minimum is at (-ln(2) / 2, 0)."""
    x0, x1 = x[0], x[1]
    return rax.exp(x0 + 3.0 * x1 - 0.1) + rax.exp(x0 - 3.0 * x1 - 0.1) + rax.exp(-x0 - 0.1)


BOYD_MINIMUM = (-math.log(2.0) / 2.0, 0.0)


def hessian_vector_product(f, x, v):
    """H(x) v, the Hessian of f at x times v, as the gradient of <grad f(x), v>."""
    return rax.grad(lambda x: (rax.grad(f)(x) * v).sum())(x)


def conjugate_gradient(matvec, b, max_iterations, tol=1e-12):
    """The solution d of A d = b for a symmetric positive definite A known only through
    matvec(v) = A v. In n dimensions it is exact after n iterations (in exact arithmetic)."""
    d = rax.zeros_like(b)
    residual = direction = b  # b - A d, with d = 0
    rr = (residual * residual).sum().item()
    for _ in range(max_iterations):
        if rr <= tol ** 2:
            break
        a_direction = matvec(direction)
        alpha = rr / (direction * a_direction).sum().item()
        d = d + alpha * direction
        residual = residual - alpha * a_direction
        rr, rr_old = (residual * residual).sum().item(), rr
        direction = residual + (rr / rr_old) * direction
    return d


def backtracking(f, x, direction, slope, alpha=0.25, beta=0.5):
    """The step length t: halve t from 1 until f(x + t d) <= f(x) + alpha t <grad, d>
    (Armijo's rule), so that every step goes down by a fair share of what the slope
    promises."""
    t, fx = 1.0, f(x).item()
    while f(x + t * direction).item() > fx + alpha * t * slope and t > 1e-12:
        t *= beta
    return t


def minimize(f, x, direction_fn, tol=1e-6, max_steps=1000):
    """Descend from x along direction_fn(x, gradient) with a backtracking line search until
    |grad f| <= tol. Returns (x, the gradient norm at each iterate)."""
    grad_f = rax.grad(f)
    norms = []
    for _ in range(max_steps + 1):
        gradient = grad_f(x)
        norms.append(math.sqrt((gradient * gradient).sum().item()))
        if norms[-1] <= tol or len(norms) > max_steps:
            break
        direction = direction_fn(x, gradient)
        slope = (gradient * direction).sum().item()
        t = backtracking(f, x, direction, slope)
        # A fresh leaf: the next x keeps its value but forgets the graph that computed it,
        # so later gradients do not walk back through every earlier step.
        x = rax.Tensor(x + t * direction)
    return x, norms


def gradient_descent_direction(x, gradient):
    """Straight downhill."""
    return -gradient


def newton_direction(f):
    """Newton's direction d = -H^-1 grad f, with the Hessian from rax.hessian (2 x 2 here,
    solved by Cramer's rule)."""
    def direction(x, gradient):
        (a, b), (c, d) = rax.hessian(f)(x).tolist()
        g0, g1 = gradient.tolist()
        det = a * d - b * c
        return rax.Tensor([-(d * g0 - b * g1) / det, -(a * g1 - c * g0) / det])
    return direction


def newton_cg_direction(f):
    """Newton's direction d, with H d = -grad f solved by conjugate gradients on
    Hessian-vector products: the Hessian itself is never formed."""
    def direction(x, gradient):
        return conjugate_gradient(lambda v: hessian_vector_product(f, x, v), -gradient,
                                  max_iterations=x.size)
    return direction


def main(start=(-1.0, 1.0), tol=1e-6, max_steps=1000, verbose=True, plot=None):
    """Run Newton in 1-D, then Newton-CG and gradient descent in 2-D.

    Returns {method: (number of steps, final |error| or |gradient|)} for "newton_1d",
    "newton_cg" and "gradient_descent".
    """
    say = print if verbose else (lambda *args: None)
    say("1. Newton's method on f(x) = x^3/3 - 2x from x = 1, with f'' = grad(grad(f)):")
    iterates = newton_1d(cubic, 1.0)
    for k, x in enumerate(iterates):
        say(f"   step {k}   x = {x:.16f}   error {abs(x - math.sqrt(2.0)):.1e}")
    say(f"   sqrt(2)  = {math.sqrt(2.0):.16f}: the correct digits double at every step\n")

    x0 = rax.Tensor(list(start))
    basis = [rax.Tensor([1.0, 0.0]), rax.Tensor([0.0, 1.0])]
    columns = [hessian_vector_product(boyd, x0, e).tolist() for e in basis]
    say(f"2. f(x) = exp(x0 + 3 x1 - 0.1) + exp(x0 - 3 x1 - 0.1) + exp(-x0 - 0.1) "
        f"from x = {list(start)}")
    say("   its Hessian there, one column per Hessian-vector product H e_i:")
    for row in zip(*columns):
        say("      [" + "  ".join(f"{value:9.4f}" for value in row) + "]")
    hessian = rax.hessian(boyd)(x0).tolist()
    say("   and rax.hessian gives the same matrix at once:")
    for row in hessian:
        say("      [" + "  ".join(f"{value:9.4f}" for value in row) + "]")
    runs = {"newton": ("Newton (hessian)", newton_direction(boyd)),
            "newton_cg": ("Newton-CG", newton_cg_direction(boyd)),
            "gradient_descent": ("gradient descent", gradient_descent_direction)}
    norms = {}  # display name -> |grad f| at each iterate
    results = {"newton_1d": (len(iterates) - 1, abs(iterates[-1] - math.sqrt(2.0)))}
    for key, (name, direction_fn) in runs.items():
        x, norms[name] = minimize(boyd, x0, direction_fn, tol, max_steps)
        steps, norm = results[key] = (len(norms[name]) - 1, norms[name][-1])
        outcome = (f"{steps:4d} steps to |grad| <= {tol:g}" if norm <= tol else
                   f"stopped after {steps} steps at |grad| = {norm:.1e}")
        say(f"   {name:<17} {outcome}; distance to the minimum "
            f"{math.dist(x.tolist(), BOYD_MINIMUM):.1e}")
    say()
    say(termplot.line_plot(norms, log_scale=True, title="|grad f| (log), same line search"))
    if plot:
        termplot.save_figure(plot, norms, title="|grad f|, same line search", log_scale=True)
    results["jacobian_seconds"] = compare_jacobians(say)
    return results


# ---- 3. Jacobians: rows by vjp or columns by jvp -------------------------------------------

def wide(x):
    """R^n -> R^2: many inputs, two outputs."""
    return rax.stack([(x * x).sum(), x.sin().sum()])


def tall(x):
    """R^2 -> R^m: two inputs, many outputs."""
    m = 100
    return (rax.arange(m) / m * x[0] + x[1]).tanh()


def jacobian_by_rows(f, x):
    """One vjp per output element: row i is J^T e_i."""
    out, f_vjp = rax.vjp(f, x)
    rows = [f_vjp(rax.one_hot([i], out.size)[0])[0] for i in range(out.size)]
    return rax.stack(rows)


def jacobian_by_columns(f, x):
    """One jvp per input element: column j is J e_j."""
    columns = [rax.jvp(f, (x,), (rax.one_hot([j], x.size)[0],))[1] for j in range(x.size)]
    return rax.stack(columns, axis=1)


def compare_jacobians(say, n=100):
    """Time both ways on a wide and a tall Jacobian; returns {(shape, way): seconds}."""
    say("\n3. A Jacobian by rows (a vjp each) or by columns (a jvp each), timed:")
    seconds = {}
    for name, f, x in (("wide 2 x 100", wide, rax.uniform((n,), -1, 1, rng=0)),
                       ("tall 100 x 2", tall, rax.Tensor([0.5, -0.25]))):
        expected = rax.jacobian(f)(x).tolist()
        for way, jacobian_fn in (("rows", jacobian_by_rows), ("columns", jacobian_by_columns)):
            start = time.perf_counter()
            got = jacobian_fn(f, x).tolist()
            seconds[name, way] = time.perf_counter() - start
            assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                       for row_a, row_b in zip(got, expected) for a, b in zip(row_a, row_b))
        say(f"   {name}:  rows {seconds[name, 'rows'] * 1e3:6.1f} ms   columns "
            f"{seconds[name, 'columns'] * 1e3:6.1f} ms")
    say("   The fewer passes win: rax.jacobian takes rows when there are fewer outputs than\n"
        "   inputs, else columns.")
    return seconds


def parse_args(argv=None):
    """The command line: the starting point, the tolerance and --plot."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, nargs=2, metavar=("X0", "X1"),
                        help="where both 2-D methods start")
    parser.add_argument("--tol", type=float, help="stop when |grad f| <= tol")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
