"""Tests for rax: forward values against math, gradients against hand-derived formulas and
central differences, engine properties, optimizers and errors."""

import math
import os

import pytest
from hypothesis import given, settings, strategies as st

import rax
from rax import Tensor

settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("ci", deadline=None, max_examples=50, derandomize=True,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=5))
def test_sum_of_squares_gradient_is_twice_x(values):
    """d/dx sum(x * x) = 2x, elementwise."""
    x = Tensor(values)
    g = (x * x).sum().backward()
    assert g[x].tolist() == pytest.approx([2 * v for v in values])


def test_chain_of_100000_nodes_backward_without_recursion():
    """A 100,000-op chain backward: no RecursionError, and the gradient is exact."""
    x = y = Tensor(1.0)
    for _ in range(100_000):
        y = y + 1.0
    assert y.backward()[x].item() == 1.0
