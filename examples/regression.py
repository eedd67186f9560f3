"""Fit a line and a cubic by gradient descent, and check them against the exact answer.

What it teaches: regression with rax, and how to trust it. Polynomial regression is linear
regression on the features 1, x, x^2, ..., x^d, so both models are one function,
predict = features @ w. Gradient descent on the mean squared error finds w step by step;
the normal equations (X^T X) w = X^T y give the same w at once, here solved in plain Python
by Gaussian elimination. The two answers are printed side by side with their largest gap,
and the terminal plot shows the excess loss (loss minus the least-squares loss) on a log
scale: gradient descent on a quadratic converges geometrically, a straight line there, until
it reaches the roundoff of float64 (the line gets there within a few dozen steps).

    python examples/regression.py
    python examples/regression.py --plot regression.png   # a figure, if matplotlib is there
"""

import argparse
import os
import random
import sys

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402

TRUE_COEFFICIENTS = (0.5, -1.0, 0.0, 2.0)  # y = 0.5 - x + 2 x^3, plus noise
MODELS = {"line": 1, "cubic": 3}  # model name -> polynomial degree


def make_data(n, noise=0.1, seed=0):
    """n points (x, y) with x uniform in [-1, 1] and y the true cubic plus Gaussian noise.

    x stays in [-1, 1] so that every feature x^k is of size about 1: then one learning
    rate suits every coefficient.
    """
    rng = random.Random(seed)
    xs = [rng.uniform(-1.0, 1.0) for _ in range(n)]
    ys = [sum(c * x ** k for k, c in enumerate(TRUE_COEFFICIENTS)) + rng.gauss(0.0, noise)
          for x in xs]
    return xs, ys


def features(xs, degree):
    """The design matrix: a row [1, x, x^2, ..., x^degree] for each x (plain lists)."""
    return [[x ** k for k in range(degree + 1)] for x in xs]


def init_params(degree):
    """All coefficients zero; w[k] multiplies x^k (w[0] is the intercept)."""
    return {"w": rax.zeros((degree + 1,))}


def predict(params, x):
    """The model's y for each row of the design matrix x: x @ w."""
    return x @ params["w"]


def loss(params, x, y):
    """The mean squared error of the predictions."""
    return ((predict(params, x) - y) ** 2).mean()


def fit_gradient_descent(x, y, degree, steps, lr):
    """Plain gradient descent from zero; returns (params, the loss before each step)."""
    params, losses = init_params(degree), []
    for _ in range(steps):
        value = loss(params, x, y)
        params = rax.sgd(params, value.backward(), lr)
        losses.append(value.item())
    return params, losses


def solve(matrix, rhs):
    """The vector v with matrix @ v = rhs, by Gaussian elimination (plain Python floats).

    Partial pivoting (the row with the largest entry goes first) keeps rounding errors
    small; a singular matrix is a ValueError.
    """
    n = len(rhs)
    rows = [[float(a) for a in row] + [float(b)] for row, b in zip(matrix, rhs)]  # [A | b]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if rows[pivot][col] == 0.0:
            raise ValueError(f"solve: the matrix is singular (column {col})")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):  # zero out column `col` below the diagonal
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    v = [0.0] * n
    for r in reversed(range(n)):  # back substitution, the last unknown first
        known = sum(rows[r][c] * v[c] for c in range(r + 1, n))
        v[r] = (rows[r][n] - known) / rows[r][r]
    return v


def least_squares(x, y):
    """The w that minimizes |x w - y|^2, from the normal equations (x^T x) w = x^T y."""
    columns = list(zip(*x))
    gram = [[sum(a * b for a, b in zip(ci, cj)) for cj in columns] for ci in columns]
    moments = [sum(a * b for a, b in zip(ci, y)) for ci in columns]
    return solve(gram, moments)


def mean_squared_error(x, y, w):
    """The loss of coefficients w in plain Python, for the closed-form answer."""
    return sum((sum(a * b for a, b in zip(row, w)) - t) ** 2 for row, t in zip(x, y)) / len(y)


def coefficient_table(degree, learned, exact):
    """Rows of text: the true, learned and exact coefficients under their monomials."""
    names = ["1", "x"] + [f"x^{k}" for k in range(2, degree + 1)]
    rows = [("", names)]
    if degree + 1 == len(TRUE_COEFFICIENTS):
        rows.append(("true", [f"{c:.4f}" for c in TRUE_COEFFICIENTS]))
    rows += [("gradient descent", [f"{c:.4f}" for c in learned]),
             ("least squares", [f"{c:.4f}" for c in exact])]
    return [f"    {label:<18}" + "".join(f"{cell:>10}" for cell in cells) for label, cells in rows]


def save_regression_figure(path, xs, ys, fits, excess):
    """The data with each fitted curve, and the excess losses, as an image (if matplotlib)."""
    plt = termplot.pyplot_or_none()
    if plt is None:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.scatter(xs, ys, s=10, color="gray", label="data")
    grid = [-1.0 + 2.0 * i / 200 for i in range(201)]
    for name, w in fits.items():
        left.plot(grid, [sum(c * x ** k for k, c in enumerate(w)) for x in grid], label=name)
    left.set(title="fits (gradient descent)", xlabel="x", ylabel="y")
    left.legend()
    for name, curve in excess.items():
        right.plot(range(len(curve)), [max(v, 1e-17) for v in curve], label=name)
    right.set(title="loss - least-squares loss", xlabel="step", yscale="log")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"saved the figure to {path}")


def main(n_points=100, steps=1000, lr=0.6, seed=0, verbose=True, plot=None):
    """Fit a line and a cubic by gradient descent and by least squares.

    Gradient descent on a quadratic is stable for lr < 2 / L, where L, the largest
    curvature of the loss, is twice the largest eigenvalue of x^T x / n: about 2.2 for the
    cubic's features on [-1, 1] (up to 2.6 for a small sample), hence lr = 0.6.

    Returns {model name: (first loss, last loss, largest |w_gd - w_exact|)}.
    """
    xs, ys = make_data(n_points, seed=seed)
    y = rax.Tensor(ys)
    results, fits, excess = {}, {}, {}
    for name, degree in MODELS.items():
        rows = features(xs, degree)
        params, losses = fit_gradient_descent(rax.Tensor(rows), y, degree, steps, lr)
        learned, exact = params["w"].tolist(), least_squares(rows, ys)
        gap = max(abs(a - b) for a, b in zip(learned, exact))
        best = mean_squared_error(rows, ys, exact)
        results[name], fits[name] = (losses[0], losses[-1], gap), learned
        excess[name] = [value - best for value in losses]
        if verbose:
            print(f"{name} (degree {degree}): loss {losses[0]:.4f} -> {losses[-1]:.6f} "
                  f"in {steps} steps; least squares gives {best:.6f}")
            print("\n".join(coefficient_table(degree, learned, exact)))
            print(f"    largest gap between the two answers: {gap:.1e}\n")
    if verbose:
        print(termplot.line_plot(excess, log_scale=True, height=14,
                                 title="loss - least-squares loss (log)"))
    if plot:
        save_regression_figure(plot, xs, ys, fits, excess)
    return results


def parse_args(argv=None):
    """The command line: sizes and --plot, named like main's keyword arguments."""
    # Flags left out are left out of main's arguments too, so main's defaults hold.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--n-points", type=int, help="size of the data set")
    parser.add_argument("--steps", type=int, help="gradient descent steps")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
