"""How fast is rax next to the fastest hand-written pure Python for the same job?

Each workload is written twice: once with rax, once by hand with nested lists in the
fastest style we know (zip(*B) for columns, sum(map(mul, ...)), fused comprehensions, a
hand-derived backward pass). Both run in the same process, interleaved, on the same data
from random.Random(0); the answers are checked against each other, and the table shows
the median times, their ratio, rax / hand-written, the target for that ratio and whether
this run met it (the targets are set for the full run's sizes). If micrograd is installed, a
column shows it too. Nothing here is a test: speed is reported, never asserted.

    python examples/benchmark.py            # the full table (about half a minute)
    python examples/benchmark.py --quick    # fewer repeats, smaller sizes (seconds)

The garbage collector stays on, as in any Python program. It is not forced between runs:
neither rax nor the hand-written code leaves cycles behind, and a collection before each
run would only empty the caches, which hurts the smallest workloads the most.
"""

import argparse
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from operator import add, mul

# NumPy's rows run with one BLAS thread, as the targets assume (set before NumPy is imported;
# a value already in the environment wins, and the table says which it was).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# rax.py sits one folder up: put it first on the path (also under `python -I`, from any folder).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rax  # noqa: E402

try:
    from micrograd.engine import Value as MicrogradValue
except ImportError:
    MicrogradValue = None


# ---- data -----------------------------------------------------------------------------------

def random_matrix(rng, n, m, scale=1.0):
    return [[rng.gauss(0.0, scale) for _ in range(m)] for _ in range(n)]


def mlp_params(rng, sizes):
    """Weights (fan_in x fan_out) scaled by 1/sqrt(fan_in), small random biases."""
    params = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        params.append((random_matrix(rng, n_in, n_out, 1.0 / math.sqrt(n_in)),
                       [rng.gauss(0.0, 0.1) for _ in range(n_out)]))
    return params


# ---- hand-written kernels -------------------------------------------------------------------

# Builtins and operators are bound as default arguments, local names being the fastest to
# look up: the hand-written code should be the fastest we can write.

def hand_matmul(a, b, sum=sum, mul=mul):
    columns = list(zip(*b))
    return [[sum(map(mul, row, column)) for column in columns] for row in a]


def hand_linear(x, w, b, sum=sum, mul=mul):
    """x @ w + b, with the bias fused into the comprehension."""
    columns = list(zip(*w))
    return [[sum(map(mul, row, column)) + bias for column, bias in zip(columns, b)]
            for row in x]


def hand_relu(z):
    return [[v if v > 0.0 else 0.0 for v in row] for row in z]


def hand_relu_backward(dh, z):
    return [[d if v > 0.0 else 0.0 for d, v in zip(drow, zrow)] for drow, zrow in zip(dh, z)]


def hand_linear_backward(x, w, dz, need_dx, sum=sum, mul=mul):
    """Gradients of x @ w + b given dz: (dx or None, dw, db)."""
    dw = hand_matmul(list(zip(*x)), dz)  # x^T @ dz
    db = [sum(column) for column in zip(*dz)]
    dx = [[sum(map(mul, drow, wrow)) for wrow in w] for drow in dz] if need_dx else None
    return dx, dw, db


def hand_sgd(params, grads, lr):
    """New (w, b) per layer: p - lr * g."""
    return [([[p - lr * g for p, g in zip(prow, grow)] for prow, grow in zip(w, dw)],
             [p - lr * g for p, g in zip(b, db)])
            for (w, b), (dw, db) in zip(params, grads)]


def hand_mlp_forward(params, x):
    """The pre-activations and activations of an MLP with ReLU between layers."""
    zs, hs = [], [x]
    for i, (w, b) in enumerate(params):
        z = hand_linear(hs[-1], w, b)
        zs.append(z)
        hs.append(hand_relu(z) if i < len(params) - 1 else z)
    return zs, hs


def hand_mlp_backward(params, zs, hs, dout):
    grads = []
    dz = dout
    for i in reversed(range(len(params))):
        dh, dw, db = hand_linear_backward(hs[i], params[i][0], dz, need_dx=i > 0)
        grads.append((dw, db))
        if i > 0:
            dz = hand_relu_backward(dh, zs[i - 1])
    return grads[::-1]


def hand_step_mse(params, x, y, lr):
    """One step of an MLP with mean-squared error: forward, backward, SGD."""
    zs, hs = hand_mlp_forward(params, x)
    pred = hs[-1]
    n = len(x) * len(pred[0])
    diff = [[p - t for p, t in zip(prow, trow)] for prow, trow in zip(pred, y)]
    loss = sum(d * d for row in diff for d in row) / n
    dout = [[2.0 * d / n for d in row] for row in diff]
    return loss, hand_sgd(params, hand_mlp_backward(params, zs, hs, dout), lr)


def hand_step_cross_entropy(params, x, labels, lr):
    """One step of an MLP with softmax cross-entropy: forward, backward, SGD."""
    zs, hs = hand_mlp_forward(params, x)
    n = len(x)
    loss, dout = 0.0, []
    for row, label in zip(hs[-1], labels):
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        total = sum(exps)
        loss -= row[label] - top - math.log(total)
        probs = [e / total for e in exps]
        probs[label] -= 1.0
        dout.append([p / n for p in probs])
    return loss / n, hand_sgd(params, hand_mlp_backward(params, zs, hs, dout), lr)


def hand_chain(x, steps):
    y, dy_dx = x, 1.0
    for _ in range(steps):
        y = y * 1.0001 + 0.0001
        dy_dx = dy_dx * 1.0001
    return dy_dx


def hand_conv_gradients(x, w, g):
    """The forward pass conv2d(x, w), then d/dx and d/dw given g, the gradient of its output
    (d/dx and d/dw of sum(conv2d(x, w) * g)), for x
    (N, C, H, W), w (O, C, 3, 3) (stride 1, no padding), by im2col by hand: the patches of
    each image, the dot products with each filter, the gradients through the same patches."""
    n_out, kh, kw = len(w), len(w[0][0]), len(w[0][0][0])
    filters = [[v for channel in f for row in channel for v in row] for f in w]
    h, width = len(x[0][0]), len(x[0][0][0])
    oh, ow = h - kh + 1, width - kw + 1
    dw = [[0.0] * len(filters[0]) for _ in range(n_out)]
    dx, outputs = [], []
    for image, gi in zip(x, g):
        columns = [[v for r in range(oh) for v in channel[r + i][j:j + ow]]
                   for channel in image for i in range(kh) for j in range(kw)]
        patches = list(zip(*columns))
        outputs.append([[sum(map(mul, patch, f)) for patch in patches] for f in filters])
        grads = [[v for row in go for v in row] for go in gi]  # (O, OH * OW)
        for o in range(n_out):  # dw[o][k] = sum over positions of g * patch
            dw[o] = [a + sum(map(mul, grads[o], column)) for a, column in zip(dw[o], columns)]
        dpatches = [[sum(map(mul, by_filter, f_column)) for f_column in zip(*filters)]
                    for by_filter in zip(*grads)]
        image_grad = [[[0.0] * width for _ in range(h)] for _ in image]
        k = 0
        for c in range(len(image)):
            for i in range(kh):
                for j in range(kw):
                    column = [p[k] for p in dpatches]
                    k += 1
                    for r in range(oh):
                        row = image_grad[c][r + i]
                        row[j:j + ow] = map(add, row[j:j + ow], column[r * ow:(r + 1) * ow])
        dx.append(image_grad)
    return dx, [[[dw[o][(c * kh + i) * kw:(c * kh + i + 1) * kw] for i in range(kh)]
                 for c in range(len(x[0]))] for o in range(n_out)], outputs


# ---- the same with rax ----------------------------------------------------------------------

def rax_params(params):
    return [{"w": rax.Tensor(w), "b": rax.Tensor(b)} for w, b in params]


def rax_mlp(params, x):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = rax.relu(h)
    return h


def rax_step_mse(params, x, y, lr):
    loss = ((rax_mlp(params, x) - y) ** 2).mean()
    return loss.item(), rax.sgd(params, loss.backward(), lr)


def rax_step_cross_entropy(params, x, labels, lr):
    log_probs = rax.log_softmax(rax_mlp(params, x), axis=1)
    loss = -(log_probs * labels).sum(axis=1).mean()
    return loss.item(), rax.sgd(params, loss.backward(), lr)


def rax_chain(x, steps):
    y = x
    for _ in range(steps):
        y = y * 1.0001 + 0.0001
    return y.backward()[x].item()


# ---- the same with rax.jit: traced once, then run as compiled Python ----------------------

def rax_step_values(loss_fn, params, x, y, lr):
    """One step without .item(), so that it can be traced: (loss, new params)."""
    loss, grads = rax.value_and_grad(loss_fn)(params, x, y)
    return loss, rax.sgd(params, grads, lr)


def mse(params, x, y):
    return ((rax_mlp(params, x) - y) ** 2).mean()


def cross_entropy(params, x, labels):
    return -(rax.log_softmax(rax_mlp(params, x), axis=1) * labels).sum(axis=1).mean()


def chain(x, steps):
    y = x
    for _ in range(steps):
        y = y * 1.0001 + 0.0001
    return y


COMPILE_SECONDS = {}  # workload -> seconds of its first call: trace, generate, compile


def jitted(name, f):
    """rax.jit(f), its first call timed (the one-off cost) and its result as rax_* give."""
    fast = rax.jit(f)

    def call(*args):
        if name not in COMPILE_SECONDS:
            start = time.perf_counter()
            fast(*args)
            COMPILE_SECONDS[name] = time.perf_counter() - start
        return fast(*args)

    return call


# ---- micrograd, when installed --------------------------------------------------------------

def micrograd_matmul(a, b):
    columns = list(zip(*b))
    return [[sum((u * v for u, v in zip(row, column)), MicrogradValue(0.0))
             for column in columns] for row in a]


def micrograd_chain(x, steps):
    x = MicrogradValue(x)
    y = x
    for _ in range(steps):
        y = y * 1.0001 + 0.0001
    y.backward()
    return x.grad


def micrograd_step_mse(params, x, y, lr):
    params = [([[MicrogradValue(v) for v in row] for row in w], [MicrogradValue(v) for v in b])
              for w, b in params]
    h = [[MicrogradValue(v) for v in row] for row in x]
    for i, (w, b) in enumerate(params):
        h = [[sum((u * v for u, v in zip(row, column)), bias)
              for column, bias in zip(zip(*w), b)] for row in h]
        if i < len(params) - 1:
            h = [[v.relu() for v in row] for row in h]
    n = len(x) * len(y[0])
    loss = sum(((p - t) ** 2 for prow, trow in zip(h, y) for p, t in zip(prow, trow)),
               MicrogradValue(0.0)) * (1.0 / n)
    loss.backward()
    return loss.data, [([[v.data - lr * v.grad for v in row] for row in w],
                        [v.data - lr * v.grad for v in b]) for w, b in params]


# ---- checking and timing --------------------------------------------------------------------

def flat(x):
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in flat(item)]
    if isinstance(x, dict):
        return [v for key in sorted(x) for v in flat(x[key])]
    if isinstance(x, rax.Tensor):
        return flat(x.tolist())
    if isinstance(x, complex):
        return [x.real, x.imag]
    return [float(x)]


def check_same(name, got, expected):
    """Every number in got is close to the same number in expected. Params are compared as
    (w, b) per layer: rax's layer dicts list their keys in sorted order, b before w."""
    if isinstance(got, tuple) and isinstance(got[1], list) and isinstance(got[1][0], dict):
        got = (got[0], [(layer["w"], layer["b"]) for layer in got[1]])
    got, expected = flat(got), flat(expected)
    assert len(got) == len(expected), f"{name}: {len(got)} values, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            raise AssertionError(f"{name}: value {i} is {a}, the hand-written code gives {b}")


def median_times(functions, seconds, least=11):
    """Median seconds of each function, run in turns so that noise hits them alike, as many
    turns as fit in about `seconds` (at least `least`).

    What is alive before the timing (every workload's data, compiled programs, modules) is
    frozen out of the cycle collector (gc.freeze) while it runs, so that a workload pays
    for collecting its own objects only, not for the data of the workloads around it in
    this process: without it, W4 (30,000 graph nodes a run) measured 204x the hand loop
    here, with it 143x, and alone in a fresh process 160-168x."""
    times = [[] for _ in functions]
    gc.collect()
    gc.freeze()
    try:
        started = time.perf_counter()
        while len(times[0]) < least or time.perf_counter() - started < seconds:
            for i, f in enumerate(functions):
                start = time.perf_counter()
                f()
                times[i].append(time.perf_counter() - start)
    finally:
        gc.unfreeze()
    return [statistics.median(t) for t in times]


def peak_memory(f):
    gc.collect()
    tracemalloc.start()
    f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def workloads(quick):
    """(id, description, target ratio, hand function, rax function, micrograd function or
    None, check pair) for each workload."""
    rng = random.Random(0)
    rows = []
    for n in ((16, 64) if quick else (16, 64, 128)):
        a, b = random_matrix(rng, n, n), random_matrix(rng, n, n)
        ta, tb = rax.Tensor(a), rax.Tensor(b)
        micro = None
        if MicrogradValue is not None and n <= 16:
            ma = [[MicrogradValue(v) for v in row] for row in a]
            mb = [[MicrogradValue(v) for v in row] for row in b]
            micro = (lambda ma=ma, mb=mb: micrograd_matmul(ma, mb))
        rows.append((f"W1 n={n}", f"A @ B, {n}x{n}, forward", 1.25 if n == 16 else 1.05,
                     lambda a=a, b=b: hand_matmul(a, b), lambda ta=ta, tb=tb: ta @ tb, micro))

    side = 128 if quick else 256
    x = random_matrix(rng, side, side)
    bias = [rng.gauss(0.0, 1.0) for _ in range(side)]
    tx, tbias = rax.Tensor(x), rax.Tensor(bias)
    rows.append(("W2", f"(X + b) * X, X {side}x{side}, b ({side},)", 1.55,
                 lambda: [list(map(mul, map(add, row, bias), row)) for row in x],
                 lambda: (tx + tbias) * tx, None))
    # An eager library cannot fuse: next to the best unfused code (one map per op), the
    # ratio shows rax's own overhead rather than the cost of an extra pass.
    rows.append(("W2-map", "the same, against one map(op) pass per op by hand", 1.1,
                 lambda: [list(map(mul, s, row)) for s, row in
                          zip([list(map(add, row, bias)) for row in x], x)],
                 lambda: (tx + tbias) * tx, None))
    fused = jitted("W2-jit", lambda x, b: (x + b) * x)
    rows.append(("W2-jit", "the same, rax.jit", 1.0,
                 lambda: [list(map(mul, map(add, row, bias), row)) for row in x],
                 lambda: fused(tx, tbias), None))

    params = mlp_params(rng, (2, 16, 16, 1))
    points = random_matrix(rng, 100, 2)
    targets = [[math.sin(p[0]) * math.cos(p[1])] for p in points]
    rparams, rpoints, rtargets = rax_params(params), rax.Tensor(points), rax.Tensor(targets)
    micro = None
    if MicrogradValue is not None:
        micro = lambda p=params: micrograd_step_mse(p, points, targets, 0.1)  # noqa: E731
    rows.append(("W3a", "MLP 2-16-16-1 step, ReLU, MSE, 100 points", 1.3,
                 lambda p=params: hand_step_mse(p, points, targets, 0.1),
                 lambda p=rparams: rax_step_mse(p, rpoints, rtargets, 0.1), micro))
    step = jitted("W3a-jit", lambda p, x, y: rax_step_values(mse, p, x, y, 0.1))
    rows.append(("W3a-jit", "the same, rax.jit", 0.8,
                 lambda p=params: hand_step_mse(p, points, targets, 0.1),
                 lambda p=rparams: item_first(step(p, rpoints, rtargets)), None))

    # vmap: per-example gradients of W3a's MLP, the loop of grad as the hand-written code.
    def per_example_loss(p, x, y):
        return ((rax_mlp(p, x) - y) ** 2).mean()
    per_example = rax.vmap(rax.grad(per_example_loss), in_axes=(None, 0, 0))
    rows.append(("W3a-vmap", "vmap(grad) over W3a's 100 points; hand = a loop of rax.grad "
                 "and a stack", 0.2, lambda p=rparams: rax.tree_map(
                     lambda *g: rax.stack(g), *[rax.grad(per_example_loss)(
                         p, rpoints[i], rtargets[i]) for i in range(len(points))]),
                 lambda p=rparams: per_example(p, rpoints, rtargets), None))

    params = mlp_params(rng, (64, 128, 128, 10))
    batch = random_matrix(rng, 64, 64)
    labels = [rng.randrange(10) for _ in range(64)]
    rparams, rbatch = rax_params(params), rax.Tensor(batch)
    rlabels = rax.one_hot(labels, 10)
    rows.append(("W3b", "MLP 64-128-128-10 step, ReLU, softmax CE, batch 64", 1.15,
                 lambda: hand_step_cross_entropy(params, batch, labels, 0.1),
                 lambda: rax_step_cross_entropy(rparams, rbatch, rlabels, 0.1), None))
    step_ce = jitted("W3b-jit", lambda p, x, y: rax_step_values(cross_entropy, p, x, y, 0.1))
    rows.append(("W3b-jit", "the same, rax.jit", 1.0,
                 lambda: hand_step_cross_entropy(params, batch, labels, 0.1),
                 lambda: item_first(step_ce(rparams, rbatch, rlabels)), None))

    conv_batch = 4 if quick else 16
    images = [[random_matrix(rng, 28, 28)] for _ in range(conv_batch)]
    filters = [[random_matrix(rng, 3, 3)] for _ in range(8)]
    upstream = [[random_matrix(rng, 26, 26) for _ in range(8)] for _ in range(conv_batch)]
    timages, tfilters, tupstream = rax.Tensor(images), rax.Tensor(filters), rax.Tensor(upstream)
    def with_rax():  # the forward pass, then the backward pass from the upstream gradient
        out, backward = rax.vjp(rax.conv2d, timages, tfilters)
        dx, dw = backward(tupstream)
        return dx, dw, out.reshape(out.shape[:2] + (-1,))
    rows.append(("W5", f"conv2d ({conv_batch}, 1, 28, 28), 8 3x3 filters, forward, d/dx, d/dw",
                 1.3, lambda: hand_conv_gradients(images, filters, upstream), with_rax, None))

    # W6 measures einsum against the same contraction chained by hand from rax's ops (so
    # its "hand" column is rax too): einsum must cost no more than what it is made of.
    heads = 2 if quick else 4
    q = rax.randn((4, heads, 32, 16), rng=1)
    k = rax.randn((4, heads, 32, 16), rng=2)
    g = rax.randn((4, heads, 32, 32), rng=3)
    def scores(f):  # forward, then the gradients of q and k from an upstream g
        out, backward = rax.vjp(f, q, k)
        return out, backward(g)
    rows.append(("W6", f"einsum('bhqd,bhkd->bhqk'), (4, {heads}, 32, 16), with d/dq, d/dk; "
                 "hand = q @ swapaxes(k, -1, -2) in rax", 1.05,
                 lambda: scores(lambda q, k: q @ rax.swapaxes(k, -1, -2)),
                 lambda: scores(lambda q, k: rax.einsum("bhqd,bhkd->bhqk", q, k)), None))

    steps = 10_000
    micro = (lambda: micrograd_chain(0.5, steps)) if MicrogradValue is not None else None
    x0 = rax.Tensor(0.5)
    rows.append(("W4", f"{steps:,} x (y * 1.0001 + 0.0001) on 0-d, then dy/dx", 150,
                 lambda: hand_chain(0.5, steps), lambda: rax_chain(x0, steps), micro))
    derivative = jitted("W4-jit", rax.grad(lambda x: chain(x, steps)))
    rows.append(("W4-jit", "the same, rax.jit", 0.7,
                 lambda: hand_chain(0.5, steps), lambda: derivative(x0).item(), None))
    # As the issues' bench measures W4: the value and the gradient of a one-element tensor.
    x1 = rax.Tensor([0.5])
    both = jitted("W4-vg-jit", rax.value_and_grad(lambda x: chain(x, steps).sum()))
    rows.append(("W4-vg-jit", "value and d/dx of the same on a (1,) tensor, rax.jit", 0.5,
                 lambda: hand_chain_value_and_grad(0.5, steps),
                 lambda: value_and_grad_items(both(x1)), None))
    # The same chain as one loop (a traced fori_loop is one scan equation, whatever the
    # number of steps): compiled in milliseconds, run as generated Python for loops.
    looped = jitted("W4-fori", rax.value_and_grad(lambda x: rax.fori_loop(
        0, steps, lambda i, y: y * 1.0001 + 0.0001, x)))
    rows.append(("W4-fori", "the same as rax.fori_loop on 0-d, jit(value_and_grad)", 1.5,
                 lambda: hand_chain_value_and_grad(0.5, steps),
                 lambda: value_and_grad_items(looped(x0)), None))
    return rows + fft_rows(rng, quick)


def hand_dft(x, roots):
    """The discrete Fourier transform by its definition, sum_j x[j] exp(-2 pi i jk / n) for
    each k: n**2 products, with the n roots of unity computed once (roots[m] for jk = m mod n)."""
    n = len(x)
    return [sum(map(mul, x, [roots[j * k % n] for j in range(n)])) for k in range(n)]


def fft_rows(rng, quick):
    """W7: rax.fft.fft, O(n log n) (radix 2, and Bluestein for a prime n), against the plain
    O(n**2) DFT written by hand: the ratio is the point, far below 1."""
    rows = []
    for n in ((256, 251) if quick else (1024, 1021)):
        x = [complex(rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)) for _ in range(n)]
        roots = [complex(math.cos(2 * math.pi * m / n), -math.sin(2 * math.pi * m / n))
                 for m in range(n)]
        tx = rax.Tensor(x)
        kind = "radix 2" if n & (n - 1) == 0 else "Bluestein"
        rows.append((f"W7 n={n}", f"rax.fft.fft of {n} complex numbers ({kind}); hand = the "
                     f"O(n**2) DFT", 0.05, lambda x=x, roots=roots: hand_dft(x, roots),
                     lambda tx=tx: rax.fft.fft(tx), None))
    return rows


def hand_chain_value_and_grad(x, steps):
    """The chain's value and derivative, by hand: (y, dy/dx)."""
    y, dy_dx = x, 1.0
    for _ in range(steps):
        y = y * 1.0001 + 0.0001
        dy_dx = dy_dx * 1.0001
    return y, dy_dx


def value_and_grad_items(pair):
    """(value, derivative) as floats from value_and_grad's (value, gradient) of a 0-d or
    (1,) x."""
    return pair[0].item(), pair[1].item()


def item_first(pair):
    """(loss as a float, params): what rax_step_* return, from a jitted step's result."""
    return pair[0].item(), pair[1]


# ---- the array backends, when NumPy is installed ------------------------------------------

def numpy_step(np, params, x, target, lr, cross_entropy):
    """One step of the MLP in NumPy by hand: forward, hand-derived backward, SGD. target is
    y (MSE) or one-hot labels (softmax cross-entropy)."""
    hs, zs = [x], []
    for i, (w, b) in enumerate(params):
        z = hs[-1] @ w + b
        zs.append(z)
        hs.append(np.maximum(z, 0.0) if i < len(params) - 1 else z)
    out, n = hs[-1], len(x)
    if cross_entropy:
        shifted = out - out.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -(log_probs * target).sum(axis=1).mean()
        dz = (np.exp(log_probs) - target) / n
    else:
        diff = out - target
        loss = (diff * diff).mean()
        dz = 2.0 * diff / diff.size
    grads = []
    for i in reversed(range(len(params))):
        w, _ = params[i]
        grads.append((hs[i].T @ dz, dz.sum(axis=0)))
        if i > 0:
            dz = (dz @ w.T) * (zs[i - 1] > 0.0)
    grads.reverse()
    return loss, [(w - lr * dw, b - lr * db) for (w, b), (dw, db) in zip(params, grads)]


def array_backends(quick):
    """W3a and W3b as compiled NumPy programs against the same steps in NumPy by hand, and
    the compiled Python, JAX (under jax.jit) and PyTorch programs beside them."""
    try:
        import numpy as np
    except ImportError:
        print("NumPy is not installed: no row for the array backends")
        return {}
    seconds = 0.2 if quick else 2.0
    print(f"\nNumPy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
          f": rax.jit(f, backend='numpy') against the same NumPy code by hand")
    print(f"{'id':<9} {'numpy ms':>10} {'rax ms':>10} {'rax/numpy':>9} {'target':>7} "
          f"{'met':>4}   workload")
    rng = random.Random(0)
    results = {}
    for name, target, f, arrays in small_array_workloads(np, rng):
        fast = rax.jit(f, backend="numpy")
        check_same(name, float(fast(*arrays).sum()), float(f(*arrays).sum()))
        times = median_times([lambda: f(*arrays), lambda: fast(*arrays)], seconds,
                             least=3 if quick else 11)
        results[name] = ratio = times[1] / times[0]
        print(f"{name:<9} {times[0] * 1e3:>10.4f} {times[1] * 1e3:>10.4f} {ratio:>9.2f} "
              f"{target_cells(ratio, target)}   {f.__doc__}")
    print(f"\n{'id':<9} {'numpy ms':>10} {'rax ms':>10} {'rax/numpy':>9} {'target':>7} "
          f"{'met':>4} {'python/rax':>10} {'jax ms':>8} {'torch ms':>8}   workload")
    for name, sizes, n, target, cross_entropy in (("W3a-np", (2, 16, 16, 1), 100, 1.3, False),
                                                  ("W3b-np", (64, 128, 128, 10), 64, 1.2,
                                                   True)):
        params = mlp_params(rng, sizes)
        x = random_matrix(rng, n, sizes[0])
        if cross_entropy:
            y = rax.one_hot([rng.randrange(sizes[-1]) for _ in range(n)], sizes[-1])
        else:
            y = rax.Tensor([[math.sin(p[0]) * math.cos(p[1])] for p in x])
        rparams, rx = rax_params(params), rax.Tensor(x)
        loss = cross_entropy_loss if cross_entropy else mse
        program = rax.trace(lambda p, x, y: rax_step_values(loss, p, x, y, 0.1))(rparams, rx, y)
        np_params = [(np.array(w), np.array(b)) for w, b in params]
        np_x, np_y = np.array(x), np.array(y.tolist())
        tree = [{"w": w, "b": b} for w, b in np_params]
        compiled = program.compile("numpy")
        python = program.compile()
        hand = lambda: numpy_step(np, np_params, np_x, np_y, 0.1, cross_entropy)  # noqa: E731
        ours = lambda: compiled(tree, np_x, np_y)  # noqa: E731
        check_same(name, float(ours()[0]), float(hand()[0]))
        times = median_times([hand, ours, lambda: python(rparams, rx, y)], seconds,
                             least=3 if quick else 11)
        others = []
        for backend in ("jax", "torch"):
            try:
                step = program.compile(backend)
            except ImportError:
                others.append("-")
                continue
            if backend == "jax":  # the compiled function runs under jax.jit
                import jax.numpy as jnp
                jax_tree = [{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in np_params]
                jx, jy = jnp.asarray(np_x), jnp.asarray(np_y)
                run = lambda step=step, t=jax_tree, jx=jx, jy=jy: [  # noqa: E731
                    out.block_until_ready() for out in rax.tree_leaves(step(t, jx, jy))]
            else:
                import torch
                torch_tree = [{"w": torch.tensor(w), "b": torch.tensor(b)} for w, b in np_params]
                run = lambda step=step, t=torch_tree: step(t, torch.tensor(np_x),  # noqa: E731
                                                           torch.tensor(np_y))
            run()
            others.append(f"{median_times([run], seconds, least=3 if quick else 11)[0] * 1e3:.3f}")
        ratio = times[1] / times[0]
        results[name] = ratio
        print(f"{name:<9} {times[0] * 1e3:>10.3f} {times[1] * 1e3:>10.3f} {ratio:>9.2f} "
              f"{target_cells(ratio, target)} {times[2] / times[1]:>10.1f} {others[0]:>8} "
              f"{others[1]:>8}   MLP {'-'.join(map(str, sizes))} step, compiled to NumPy")
    return results


def small_array_workloads(np, rng):
    """(id, target, f, arrays): W1 and W2 as NumPy arrays, where a call's fixed cost shows.
    Each f is NumPy code by hand and rax code alike (@, + and * are both libraries')."""
    rows = []
    for n, target in ((16, 4.0), (64, 1.4)):
        def matmul(a, b):
            return a @ b
        matmul.__doc__ = f"A @ B, {n}x{n}"
        arrays = (np.array(random_matrix(rng, n, n)), np.array(random_matrix(rng, n, n)))
        rows.append((f"W1/{n}-np", target, matmul, arrays))

    def bias_times(x, b):
        """(X + b) * X, X 256x256"""
        return (x + b) * x
    x = np.array(random_matrix(rng, 256, 256))
    rows.append(("W2-np", 1.2, bias_times, (x, np.array(random_matrix(rng, 1, 256)[0]))))
    return rows


def cross_entropy_loss(params, x, labels):
    return cross_entropy(params, x, labels)


def target_cells(ratio, target):
    """The target and whether the ratio meets it (at most the target): '   1.25  yes'."""
    return f"{target:>7g} {'yes' if ratio <= target else 'no':>4}"


def main(quick=False):
    seconds = 0.2 if quick else 3.0  # of timing per workload
    print(f"rax benchmark: Python {platform.python_version()} "
          f"({platform.python_implementation()}), {platform.machine()}, "
          f"{platform.system()} {platform.release()}, {os.cpu_count()} cpus")
    print("target: the highest rax/hand ratio we aim for; met: whether this run stayed at or "
          "under it")
    if quick:
        print("--quick: smaller sizes, fewer repeats; the targets are for the full run, so "
              "'met' is a hint")
    header = (f"{'id':<9} {'hand ms':>10} {'rax ms':>10} {'rax/hand':>9} {'target':>7} "
              f"{'met':>4}")
    if MicrogradValue is not None:
        header += f" {'micrograd/hand':>15}"
    print(header + "   workload")
    results = {}
    for name, what, target, hand, with_rax, micro in workloads(quick):
        check_same(name, with_rax(), hand())
        functions = [hand, with_rax] + ([micro] if micro else [])
        times = median_times(functions, seconds, least=3 if quick else 11)
        ratio = times[1] / times[0]
        results[name] = ratio
        line = f"{name:<9} {times[0] * 1e3:>10.3f} {times[1] * 1e3:>10.3f} {ratio:>9.2f} " \
               f"{target_cells(ratio, target)}"
        if MicrogradValue is not None:
            line += f" {times[2] / times[0]:>15.1f}" if micro else f" {'-':>15}"
        print(line + f"   {what}")

    print("one-off cost of rax.jit (trace, generate and compile, on the first call): " +
          ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in COMPILE_SECONDS.items()))
    rng = random.Random(0)
    params = mlp_params(rng, (2, 16, 16, 1))
    points = random_matrix(rng, 100, 2)
    targets = [[math.sin(p[0]) * math.cos(p[1])] for p in points]
    rparams, rpoints, rtargets = rax_params(params), rax.Tensor(points), rax.Tensor(targets)
    hand_peak = peak_memory(lambda: hand_step_mse(params, points, targets, 0.1))
    rax_peak = peak_memory(lambda: rax_step_mse(rparams, rpoints, rtargets, 0.1))
    results["M"] = rax_peak / hand_peak
    print(f"{'M':<9} {hand_peak / 1024:>8.0f}kB {rax_peak / 1024:>8.0f}kB "
          f"{rax_peak / hand_peak:>9.2f} {target_cells(rax_peak / hand_peak, 3)}"
          "   peak memory of one W3a step (tracemalloc)")
    results.update(array_backends(quick))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    main(parser.parse_args().quick)
