"""Recover the frequencies of a noisy signal with rax.fft, then fit them through rfft.

What it teaches: a real signal's spectrum, rax.fft.rfft, is complex: each term says how much
of one frequency (rax.fft.rfftfreq) the signal holds, |X| its amplitude and angle(X) its
phase. The largest peaks of the power |X|**2 give the frequencies to within one bin, fs / n.
To do better than a bin, fit a model of three cosines by gradient descent on the distance
between its spectrum and the signal's: the loss is real, so rax.grad flows back through abs,
through the complex numbers of rfft (its vjp is a transform too) to the real parameters.
The peaks start the fit; Adam takes it to a fraction of a bin, far below the noise.

    python examples/spectrum.py
    python examples/spectrum.py --steps 200 --plot spectrum.png   # a figure, with matplotlib
"""

import argparse
import math
import os
import random
import sys

# termplot.py sits beside this file and rax.py one folder up. Put both first on the path:
# `python -I` leaves even this file's folder off it, and nothing needs to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import rax  # noqa: E402
import termplot  # noqa: E402

RATE = 64.0  # samples per second
N = 256  # samples: 4 seconds, so a bin of the spectrum is RATE / N = 0.25 Hz
TRUE = [(5.1, 1.0, 0.4), (12.37, 0.6, -1.0), (20.8, 0.35, 2.0)]  # (Hz, amplitude, phase)


def make_signal(noise=0.5, seed=0):
    """(times, samples): the sum of the TRUE cosines at RATE for N samples, plus noise."""
    rng = random.Random(seed)
    ts = [k / RATE for k in range(N)]
    ys = [sum(a * math.cos(2.0 * math.pi * f * t + phi) for f, a, phi in TRUE)
          + rng.gauss(0.0, noise) for t in ts]
    return rax.Tensor(ts), rax.Tensor(ys)


def peaks(signal, count=3):
    """(frequency, amplitude, phase) of the count largest local maxima of |rfft|**2."""
    spectrum = rax.fft.rfft(signal)
    power = (rax.abs(spectrum) ** 2).tolist()
    freqs = rax.fft.rfftfreq(N, 1.0 / RATE).tolist()
    tops = [k for k in range(1, len(power) - 1) if power[k - 1] < power[k] >= power[k + 1]]
    tops = sorted(sorted(tops, key=power.__getitem__)[-count:])
    values = spectrum.tolist()
    return [(freqs[k], 2.0 * abs(values[k]) / N, math.atan2(values[k].imag, values[k].real))
            for k in tops]


def predict(params, t):
    """The model: the sum of a_i cos(2 pi f_i t + phi_i) at the times t."""
    angles = 2.0 * math.pi * rax.outer(t, params["f"]) + params["phi"]  # (N, 3)
    return (params["a"] * rax.cos(angles)).sum(axis=1)


def loss(params, t, target_spectrum):
    """The mean squared distance between the model's spectrum and the signal's (complex
    numbers in between; the loss is real)."""
    spectrum = rax.fft.rfft(predict(params, t), norm="ortho")
    return (rax.abs(spectrum - target_spectrum) ** 2).mean()


def fit(t, signal, start, steps, lr=0.01):
    """(params, the loss at each step): Adam on the spectral loss, from the peaks."""
    target = rax.fft.rfft(signal, norm="ortho")
    params = {"f": rax.Tensor([f for f, _, _ in start]),
              "a": rax.Tensor([a for _, a, _ in start]),
              "phi": rax.Tensor([phi for _, _, phi in start])}
    value_and_grad = rax.jit(rax.value_and_grad(loss))
    opt = rax.Adam(lr=lr)
    losses = []
    for _ in range(steps):
        value, grads = value_and_grad(params, t, target)
        losses.append(value.item())
        params = opt.update(params, grads)
    losses.append(loss(params, t, target).item())
    return params, losses


def main(steps=300, verbose=True, plot=None):
    """Find the peaks, fit through rfft; returns the peaks, the fitted params, the losses."""
    say = print if verbose else (lambda *args: None)
    t, signal = make_signal()
    found = peaks(signal)
    params, losses = fit(t, signal, found, steps)
    say(f"{N} samples at {RATE:g} Hz: one bin of the spectrum is {RATE / N:g} Hz\n")
    say(f"   {'true Hz':>8} {'peak Hz':>8} {'fitted Hz':>10}   {'true a':>7} {'fitted a':>8}")
    for (f, a, _), (pf, _, _), ff, fa in zip(TRUE, found, params["f"].tolist(),
                                             params["a"].tolist()):
        say(f"   {f:8.3f} {pf:8.3f} {ff:10.3f}   {a:7.3f} {fa:8.3f}")
    say(f"\nloss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} Adam steps "
        f"(the noise alone gives about {0.5 ** 2:.2f})\n")
    say(termplot.line_plot(losses, height=10, title="spectral loss", x_label="step"))
    if plot:
        termplot.save_figure(plot, {"loss": losses}, title="spectral loss", x_label="step")
    return {"peaks": found, "params": params, "losses": losses}


def parse_args(argv=None):
    """The command line: the number of Adam steps, and --plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help="Adam's steps")
    parser.add_argument("--plot", metavar="FILE.png", help="save a figure (needs matplotlib)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
