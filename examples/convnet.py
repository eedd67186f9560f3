"""A small convolutional network tells bars from crosses in noisy 8x8 images.

What it teaches: convolution in rax is im2col (every 3x3 window of the image copied into a
row of patches) and a matmul; its gradient adds each patch's gradient back where it was
read. The network is conv2d (4 filters of 3x3), relu, max_pool2d, and a linear layer to
two classes, trained with cross_entropy on integer labels and Adam; the compiled step
(rax.jit) runs it. The images are made with the standard library: a vertical or
horizontal bar is class 0, a cross is class 1, with noise on every pixel.

    python examples/convnet.py
    python examples/convnet.py --plot convnet.png   # also save the loss curve (matplotlib)
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

SIDE = 8


def make_images(rng, n, noise=0.3):
    """n images (n, 1, 8, 8) and their labels: 0 for a bar, 1 for a cross."""
    images, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        row, column = rng.randrange(1, SIDE - 1), rng.randrange(1, SIDE - 1)
        image = [[rng.gauss(0.0, noise) for _ in range(SIDE)] for _ in range(SIDE)]
        vertical = label == 1 or rng.random() < 0.5
        horizontal = label == 1 or not vertical
        for k in range(SIDE):
            if vertical:
                image[k][column] += 1.0
            if horizontal:
                image[row][k] += 1.0
        images.append([image])
        labels.append(float(label))
    return rax.Tensor(images), rax.Tensor(labels)


def init_params(rng, filters=4):
    pooled = filters * (SIDE - 2) // 2 * (SIDE - 2) // 2
    return {"conv": rax.randn((filters, 1, 3, 3), rng=rng) / 3.0,
            "bias": rax.zeros((filters,)),
            "w": rax.randn((pooled, 2), rng=rng) / math.sqrt(pooled),
            "b": rax.zeros((2,))}


def predict(params, images):
    """Logits (n, 2): conv, relu, 2x2 max pool, flatten, linear."""
    h = rax.relu(rax.conv2d(images, params["conv"], params["bias"]))
    h = rax.max_pool2d(h, 2)
    return h.reshape((h.shape[0], -1)) @ params["w"] + params["b"]


def loss(params, images, labels):
    return rax.cross_entropy(predict(params, images), labels)


def accuracy(params, images, labels):
    guesses = rax.argmax(predict(params, images), axis=1)
    return (guesses == labels).mean().item()  # == is elementwise: a mean of bools


def main(steps=60, n=64, verbose=True, plot=None):
    rng = random.Random(0)
    train, train_labels = make_images(rng, n)
    test, test_labels = make_images(rng, 64)
    params = init_params(rng)
    step = rax.jit(rax.value_and_grad(loss))  # compiled on the first call
    opt = rax.Adam(lr=0.05)
    losses = []
    for i in range(steps):
        value, grads = step(params, train, train_labels)
        params = opt.update(params, grads)
        losses.append(value.item())
        if verbose and (i % 20 == 0 or i == steps - 1):
            print(f"step {i:3d}  loss {losses[-1]:.4f}")
    train_accuracy = accuracy(params, train, train_labels)
    test_accuracy = accuracy(params, test, test_labels)
    if verbose:
        print(termplot.line_plot(losses, title="cross-entropy"))
        print(f"accuracy: {train_accuracy:.0%} on the training images, "
              f"{test_accuracy:.0%} on new ones")
    if plot:
        termplot.save_figure(plot, losses, title="cross-entropy")
    return {"losses": losses, "train_accuracy": train_accuracy,
            "test_accuracy": test_accuracy}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help="training steps (default 60)")
    parser.add_argument("--plot", help="also save the loss curve to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(**vars(parse_args()))
