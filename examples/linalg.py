"""Differentiating through linear algebra: a solve, a determinant, an eigendecomposition.

What it teaches: rax.linalg's functions are ops like any other, so a gradient flows
through a linear solve, a log-determinant or an eigenvalue, and each agrees with the
formula a textbook derives by hand.

1. Least squares two ways. The weights w that minimise |X w - y|^2 solve the normal
   equations (X^T X) w = X^T y: one rax.linalg.solve. Gradient descent on the same loss,
   using rax.grad, walks to the same w; the lesson prints both and their distance.
2. The gradient of log det(A) for a covariance matrix A (symmetric, positive definite) is
   inv(A)^T (Jacobi's formula over det): rax.grad of slogdet's log gives it. rax.linalg.det
   has the cofactor matrix as its gradient, which stays right at a singular matrix, where
   no inverse exists.
3. The smallest eigenvalue of a symmetric A moves, to first order, by v^T dA v, for v its
   unit eigenvector: the gradient is v v^T. rax.linalg.eigh reads only A's lower triangle
   (as NumPy's does), so its gradient is v v^T folded onto that triangle: v_i^2 on the
   diagonal, 2 v_i v_j below it, 0 above.

Each gradient is also checked against central differences with rax.check_grads.

    python examples/linalg.py
    python examples/linalg.py --plot linalg.png    # also save a figure, if matplotlib is there
"""

import argparse
import os
import random
import sys

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path
# (`python -I` leaves even this file's folder off it).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402

la = rax.linalg


def least_squares(rng, n=40, features=3, steps=400, lr=0.1):
    """(w by solve, w by gradient descent, the descent's distance to the solve's w at each
    step) for a noisy linear model of known weights."""
    true_w = rax.Tensor([[1.5], [-2.0], [0.5]])
    x = rax.randn((n, features), rng=rng)
    y = x @ true_w + 0.1 * rax.randn((n, 1), rng=rng)
    w_solve = la.solve(x.T @ x, x.T @ y)

    def loss(w):
        return ((x @ w - y) ** 2).mean()

    rax.check_grads(loss, (rax.zeros((features, 1)),))
    w, distances = rax.zeros((features, 1)), []
    step = rax.jit(lambda w: w - lr * rax.grad(loss)(w))
    for _ in range(steps):
        w = step(w)
        distances.append(largest_difference(w, w_solve))
    return w_solve, w, distances


def log_det_gradient(rng, n=4):
    """(d log det A / dA by rax, inv(A)^T) for a random covariance matrix A."""
    q = rax.randn((n, n), rng=rng)
    a = q @ q.T + n * rax.eye(n)  # symmetric positive definite
    log_det = lambda a: la.slogdet(a)[1]  # noqa: E731
    rax.check_grads(log_det, (a,), order=2)
    rax.check_grads(la.det, (rax.Tensor([[1.0, 2.0], [2.0, 4.0]]),))  # singular
    return rax.grad(log_det)(a), la.inv(a).T, central_differences(log_det, a)


def smallest_eigenvalue_gradient(rng, n=4):
    """(d lambda_min / dA by rax, v v^T on A's lower triangle by hand) for a symmetric A."""
    q = rax.randn((n, n), rng=rng)
    a = (q + q.T) / 2.0
    smallest = lambda a: la.eigh(a)[0][0]  # noqa: E731
    rax.check_grads(smallest, (a,))
    v = la.eigh(a)[1][:, 0]
    outer = rax.outer(v, v)
    by_hand = rax.tril(2.0 * outer, -1) + outer * rax.eye(n)
    return rax.grad(smallest)(a), by_hand, central_differences(smallest, a)


def largest_difference(a, b):
    return max(abs(p - q) for p, q in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))


def central_differences(f, a, eps=1e-6):
    """d f / da element by element, (f(a + eps e_ij) - f(a - eps e_ij)) / 2 eps: the
    gradient by nothing but evaluations of f, to compare rax's against."""
    flat, rows = a.reshape(-1).tolist(), a.shape
    def at(i, step):
        moved = list(flat)
        moved[i] += step
        return f(rax.Tensor(moved).reshape(rows)).item()
    return rax.Tensor([(at(i, eps) - at(i, -eps)) / (2 * eps) for i in range(len(flat))]
                      ).reshape(rows)


def main(verbose=True, plot=None):
    rng = random.Random(0)
    w_solve, w_descent, distances = least_squares(rng)
    by_rax, by_formula, log_det_numeric = log_det_gradient(rng)
    eigen_rax, eigen_hand, eigen_numeric = smallest_eigenvalue_gradient(rng)
    results = {"least squares": largest_difference(w_solve, w_descent),
               "log det": largest_difference(by_rax, by_formula),
               "log det numeric": largest_difference(by_rax, log_det_numeric),
               "smallest eigenvalue": largest_difference(eigen_rax, eigen_hand),
               "smallest eigenvalue numeric": largest_difference(eigen_rax, eigen_numeric)}
    if verbose:
        for how, w in (("solve", w_solve), ("descent", w_descent)):
            print(f"1. least squares, w by {how:<8}", [round(v, 6) for v in w.reshape(-1).tolist()])
        print(termplot.line_plot(distances, log_scale=True,
                                 title="descent: largest |w - w_solve| (log)"))
        print("2. d log det(A) / dA, largest difference from inv(A)^T: "
              f"{results['log det']:.1e}; from central differences: "
              f"{results['log det numeric']:.1e}")
        print("3. d lambda_min / dA, largest difference from v v^T on the lower triangle: "
              f"{results['smallest eigenvalue']:.1e}; from central differences: "
              f"{results['smallest eigenvalue numeric']:.1e}")
        print("check_grads passed for every gradient above.")
    if plot:
        termplot.save_figure(plot, distances, title="gradient descent: largest |w - w_solve|",
                             log_scale=True)
    return results


def parse_args(argv=None):
    """The command line: --plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
