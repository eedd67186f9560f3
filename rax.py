# rax: Copyright (c) 2026 the rax authors. SPDX-License-Identifier: MIT (text in LICENSE).
"""rax: automatic differentiation you can read in one sitting.

rax is a small deep-learning library in one file of pure Python, in the functional style
of JAX. A model is a pure function ``model(params, x, y) -> loss``; calling it builds a
computation graph; ``loss.backward()`` returns the gradient graph, a mirror of that graph
whose node for each tensor gives, when read, the derivative of the loss with respect to that
tensor; an optimizer maps
``(params, gradients)`` to new params. It is not a fast array library: it is the smallest
complete one we could write that is still as fast as hand-written Python lists.

Three ideas carry the whole file:

1. A tensor is a nested list of Python floats (a bare float when it has no axes), with a
   shape, and it never changes. Because nothing changes, tensors may share inner lists.
2. Broadcasting is a recursive walk over the leading axis: where a side of 1 meets a
   longer side, the same inner list is simply repeated.
3. Reverse mode is a chain of vector-Jacobian products (vjps). Each primitive op states,
   next to its forward computation, how to turn the gradient of its output into the
   gradient of each input, using tensor ops, so that gradients are differentiable too.

A short tour:

>>> import rax
>>> w = rax.Tensor([1.0, -2.0, 3.0])
>>> loss = (w * w).sum()
>>> loss
Tensor(14.0, op='sum')
>>> g = loss.backward()
>>> g[w]  # w * w uses w twice: the engine adds both contributions
Tensor([2.0, -4.0, 6.0], op='add')
>>> rax.grad(lambda w: (w ** 3).sum())(w).tolist()
[3.0, 12.0, 27.0]
>>> rax.sgd({"w": w}, g, lr=0.5)  # the gradient graph itself, or a tree of gradients
{'w': Tensor([0.0, 0.0, 0.0])}

Words used throughout:

tensor      an immutable array of floats (``data``, ``shape``) that remembers how it was
            made (``op``, ``inputs``).
dtype       what a tensor's elements are: "float64" (Python floats), "bool" (Python
            bools, made by comparisons and logic, used as masks) or "complex128" (Python
            complex numbers, 5h). Chapter 1 says the rules.
leaf        a tensor made from data, not by an op: ``op`` is None, ``inputs`` is ().
            A constant is a leaf that rax made itself, of a number, list or array given
            to an op (the 2.0 of ``y * 2.0``) or as a seed or zeros of its own; it is
            marked ``attrs == {"constant": True}``.
node        a tensor in a graph; an op's output points to its inputs, never back. (A node
            of the gradient graph is a GradNode.)
op          what makes a node: add, exp, sum, matmul, ... (``t.op`` is its name).
primitive   an op with a forward computation and vjp rules of its own (chapters 2 and 4,
            two in 5, your own with ``primitive`` in 9).
composite   an op written with other ops (softmax, mean): its gradient comes for free.
vjp         vector-Jacobian product: the rule that turns the gradient of an op's output
            into the gradient of one input, ``rule(g, out, *inputs)``.
cotangent   the ``g`` a rule receives: d(final output) / d(this op's output), of out's shape.
primal      the forward tensor that a gradient belongs to (``GradNode.primal``).
seed        the cotangent that backward starts from, of the root's shape (1 for a loss):
            every gradient is the sum over the root's elements of seed times d(element).
tree        a tensor or number (a leaf of the tree), or a dict, list or tuple of trees, such
            as a model's params (chapter 7). A tree's leaf need not be a graph's leaf.
gradient graph  names two things. (1) What ``backward()`` returns: a GradNode for every
            node of the forward graph, linked the same way, whose ``value`` is the
            gradient; ``draw`` shows it. (2) The graph of tensor ops that computed those
            values: vjp rules are tensor ops, so gradients are nodes too, and
            ``grad(grad(f))`` differentiates through them.
program     the graph of one call of a function, kept by ``trace`` to run again on new
            arguments, to print and to compile (chapter 10). Its inputs are the
            arguments' tensors and numbers; its constants, what f reached otherwise.
equation    one step of a program: ``output = op(*inputs)`` with the op's static attrs.
rule        what an op computes, said once beside it: an ``_Elementwise`` expression,
            read by eager rax, a program's replay and its compiled code alike, or a
            ``_Kernel``, the kernel (appendix A) that all three call.

Inside this file ``sum``, ``max``, ``min``, ``abs``, ``pow`` and ``round`` are rax's tensor
ops, named as NumPy's, and they hide Python's builtins of the same names: where Python's
are meant, the code says ``_sum``, ``_max``, ``_min``, ``_abs`` and ``_round``; calls of the
tensor ops are written as methods (``g.sum(axes)``) wherever a builtin could be read instead.

How to read it. The first three chapters are the idea, about twenty minutes; the rest is
reference, to read when you need it (Python looks names up when a function runs, so a
function may call one defined further down):

    The idea
    1. Tensors             what a tensor is, its dtype, and how an op makes a node.
    2. A few ops           exp, add, mul, broadcast_to, sum, matmul: forward and vjp beside.
    3. Autodiff            backward, the gradient graph, grad, value_and_grad.
    Reference
    4. More primitives     unary, binary, comparisons, movement, indexing, reductions.
    5. Composite ops       built from primitives: softmax, mean, stack, ...; complex
                           numbers and their gradients (5h), rax.fft (5i).
    6. Making tensors      zeros, ones, arange, randn, ... and Python data read as tensors.
    7. Trees, optimizers   tree_map, SGD, Adam, AdamW, RMSprop, Adagrad, schedules, clipping,
                           minimize (BFGS, L-BFGS); saving with save and load.
    8. Forward mode        vjp, jvp, jacobian, hessian, hvp; vmap, scan and JAX's loops.
    9. Tools               your own primitives, check_grads, draw, to_dot; rax.testing.
    10. Programs           trace, Program (listing, replay, compile to Python), jit.
    Appendices: the machinery
    A. Nested-list kernels     broadcasting, map, reduce, matmul, movement; no Tensor.
    B. IEEE-safe scalar math   Python raises where NumPy returns inf or nan.
    C. Shared constants        one leaf per number: a speed device.
"""


import builtins
import cmath
import collections
import functools
import gc
import importlib
import inspect
import itertools
import json
import keyword
import linecache
import math
import numbers
import operator
import re
import os
import random
import struct
import sys
import threading
import warnings
import weakref
from types import MappingProxyType, SimpleNamespace

# rax.abs, rax.pow, rax.round, rax.sum, rax.max and rax.min are left out, so that
# `from rax import *` does not shadow Python's builtins of the same names (rax.all and rax.any
# are not even globals here: see __getattr__ at the end).
__all__ = [
    "Tensor", "GradNode", "AxisError",
    # constructors
    "zeros", "ones", "full", "zeros_like", "ones_like", "arange", "eye", "randn", "uniform",
    "one_hot",
    # unary
    "neg", "exp", "log", "sqrt", "sin", "cos", "tanh", "relu", "sigmoid", "square",
    "reciprocal", "stop_gradient",
    # binary
    "add", "sub", "mul", "div", "maximum", "minimum", "matmul",
    "less", "less_equal", "greater", "greater_equal", "equal", "where",
    # bools (the dtypes are said at the top of chapter 1)
    "float64", "bool_", "astype", "logical_and", "logical_or", "logical_xor", "logical_not",
    "signbit", "nonzero", "argwhere", "flatnonzero", "count_nonzero",
    # reduce
    "mean", "logsumexp", "softmax", "log_softmax", "argmax", "argmin", "var", "std", "prod",
    # more ops for models
    "clip", "sign", "floor", "ceil", "mod", "floor_divide", "leaky_relu", "silu", "softplus",
    "elu", "erf", "gelu", "cumsum", "cumprod", "layer_norm", "mse_loss",
    "nll_loss", "cross_entropy", "squeeze", "expand_dims", "swapaxes", "moveaxis", "flip",
    "take", "take_along_axis", "sort", "argsort", "conv1d", "conv2d", "max_pool2d",
    "avg_pool2d", "hstack", "diagonal", "dot", "inner", "outer", "tensordot", "einsum",
    "linalg", "LinAlgError", "norm",
    # and NumPy's math (tan, ..., chapter 4f) and other names (array, ..., 5g) join below
    "vstack", "split", "tile", "repeat", "roll", "tril", "triu", "diag", "pad",
    "dropout",
    # movement
    "reshape", "transpose", "broadcast_to", "flatten", "concatenate", "stack",
    # autodiff
    "backward", "grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp",
    # and the names of chapters 7 (trees, optimizers), 9 (tools), 10 (programs) and appendix
    # A (kernels), each listed where it begins
]


inf = math.inf
nan = math.nan
MAX_NDIM = 64  # as NumPy; it also bounds the depth of every recursive kernel
# The most elements a tensor may have. A float in a list costs at least 8 bytes (the
# reference; 32 with its own float object), so 2**31 elements is 16 GB or more: a shape
# beyond it is refused at once, before minutes of work and a MemoryError.
MAX_SIZE = 2 ** 31


# Python's own sum, max, min and abs, which rax's tensor ops of the same names hide here.
_sum, _max, _min, _abs = builtins.sum, builtins.max, builtins.min, builtins.abs
_round = builtins.round


class AxisError(ValueError, IndexError):
    """An axis out of range for a tensor's number of dimensions (as numpy.exceptions.AxisError)."""


class TraceError(TypeError):
    """A value read out of a tensor while its function is traced (chapter 10), where it
    would be frozen into the program, or a stateful optimizer's update inside a trace."""


# ============================================================================================
# 1. Tensors
#
# A tensor is a value: nested lists of floats with a shape, which never change. It also
# remembers how it was made: the op that made it and the tensors it was made from (its
# inputs), so every result is the root of a graph that leads back to the leaves. That graph is
# all that backward (chapter 3) needs.
#
# Dtypes. A tensor's dtype says what its elements are, and they are always Python's own
# values of that kind: float64 holds floats, bool holds True and False, complex128 holds
# complex numbers. The rules, said once:
#   - What makes bools: comparisons, logical ops, isnan and friends, any and all, and data
#     that is all bools (nested bools, a NumPy or torch bool array). Everything else, and
#     data with any number in it, is float64.
#   - Arithmetic reads a bool as 0.0 or 1.0 and gives float64 (where NumPy keeps bool + bool
#     a bool, rax gives 2.0). The conversion is an op of its own, astype, made by _as_tensor
#     when it meets a bool, so that eager rax, a program and every backend convert in the
#     same visible place, and no kernel of arithmetic ever sees a bool.
#   - Ops that only move or pick elements (reshape, transpose, indexing, concatenate, where
#     with two bool branches, max and min) keep the dtype: they take their inputs through
#     _as_any, not _as_tensor, so a mask stays a mask.
#   - No gradient flows to or through a bool: the ops that make bools have no vjp rules,
#     astype from bool has none, and grad with respect to a bool is a TypeError. So a vjp
#     rule never receives a bool cotangent.
#   - Complex numbers come from data with a complex number in it (or a NumPy or torch
#     complex array) and from ops that make them (rax.fft, 1j * x). An op that has a meaning
#     for them takes its inputs through _as_num, which promotes float64 (and bool) to
#     complex128 with an astype node when the other operand is complex, as NumPy, and then
#     runs its rule's complex twin (_Elementwise.complex). Every other op takes _as_tensor,
#     which refuses complex128 with a TypeError that says why: ordering (<, max, sort, relu)
#     has no complex meaning. The cotangent of a complex tensor is complex (chapter 5h).
# ============================================================================================

# The attrs of a node without static arguments, and of a constant (see appendix C): shared,
# and read-only, so no node can change another's.
_NO_ATTRS = MappingProxyType({})
_CONSTANT = MappingProxyType({"constant": True})


class Tensor:
    """An immutable n-dimensional array of floats (or bools) that remembers how it was
    computed.

    Attributes:
        data: nested lists of floats (a float for a 0-d tensor), or of bools for a bool
            tensor. Read it, never change it; ``tolist()`` gives a copy you may change.
        shape: a tuple of ints.
        dtype: "float64", "bool" or "complex128" (see the dtype rules above), equal to
            NumPy's names.
        op: the name of the op that made this tensor; None for a leaf.
        inputs: the tensors it was made from, in order; () for a leaf.
        forward: the function that made it: ``forward(*inputs, **attrs)`` makes it again,
            on other inputs too (check_grads uses this to test each op on its own); None for
            a leaf.
        vjps: one rule per input, ``rule(g, out, *inputs)`` -> the gradient for that input
            given g, the gradient of out (None where no gradient flows); () for a leaf.
        attrs: the op's static arguments (axis, shape, index, ...), a dict; for a
            constant, a leaf that rax made (from a number or list given to an op, or a seed
            or zeros of its own), {"constant": True}.

    ``Tensor(data)`` takes a number, a rectangular nested list or tuple of numbers, a
    Tensor, or anything with a ``tolist()`` method, such as a NumPy array or scalar; every
    value is stored as a Python float, unless every value is a bool (nested bools, a NumPy
    or torch bool array): then it is a bool tensor. ``float(t)``, ``int(t)`` and ``round(t)`` of a
    one-element tensor are those of its float, so ``int(Tensor(inf))`` raises Python's own
    OverflowError, as ``int(float("inf"))`` does. ``repr`` shows every value up to 1000 of
    them; past that, as NumPy, the first and last 3 along each axis, and the shape.

    ``==`` and ``!=`` compare elementwise and give bool tensors, as NumPy's and PyTorch's;
    ``hash`` is identity, so tensors can be dict keys (``g[t]``). ``bool(t)`` needs one
    element: for more, say ``.any()`` or ``.all()``. The operators are the ops of chapters 2
    and 4 (``t * u`` is ``mul(t, u)``; ``~``, ``&``, ``|`` and ``^`` are the logical ops of
    bools), and every unary op, reduction, movement op and the softmax family is also a
    method (``t.exp()``, ``t.sum(axis=0)``), attached at the end of chapter 5.

    A copy of a tensor is the tensor itself; a pickled one comes back as a leaf (see
    ``__copy__`` and ``__reduce__``).

    >>> t = Tensor([[1, 2, 3], [4, 5, 6]])
    >>> t.shape, t.ndim, t.size
    ((2, 3), 2, 6)
    >>> t[1]
    Tensor([4.0, 5.0, 6.0], op='getitem')
    >>> (t + 1).tolist()
    [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]]
    >>> t > 2, (t > 2).dtype
    (Tensor([[False, False, True], [True, True, True]], op='greater'), bool)
    """

    __slots__ = ("data", "shape", "op", "forward", "inputs", "vjps", "attrs", "dtype",
                 "__weakref__")

    def __init__(self, data):
        self.op, self.forward, self.inputs, self.vjps, self.attrs = None, None, (), (), _NO_ATTRS
        if isinstance(data, Tensor):
            state = _current_trace()
            if state is not None and _depends_on_arguments(data):  # see chapter 10
                self.op, self.forward, self.inputs, self.vjps = (
                    "stop_gradient", stop_gradient, (data,), (None,))
                state.nodes.append(self)
            data, shape, dtype = data.data, data.shape, data.dtype  # sharing is copying
        else:
            data, shape, dtype = _to_lists(data, "Tensor()")
        self.data, self.shape, self.dtype = data, shape, dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def tolist(self):
        """The values as fresh nested lists of floats or bools (one value for a 0-d tensor)."""
        _check_readable(self, "tolist()")
        return _copy_lists(self.data, self.ndim)

    def item(self):
        """The one value of a tensor with exactly one element, as a float (a bool for a
        bool tensor)."""
        _check_readable(self, "item() (or float(), int(), bool(), format())")
        if self.size != 1:
            raise ValueError(f"item(): the tensor has {self.size} elements, not 1 "
                             f"(shape {self.shape})")
        return _flat(self.data, self.ndim)[0]

    def __float__(self):
        if self.dtype is complex128:
            raise TypeError("float() of a complex128 tensor: say float(t.real) or abs(t)")
        if self.size != 1:
            raise TypeError(f"only a tensor with one element converts to float; "
                            f"this one has shape {self.shape}")
        return float(self.item())

    def __int__(self):
        return int(float(self))

    def __complex__(self):
        return complex(self.item())

    def __round__(self, digits=None):
        return _round(float(self), digits)

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} (more than "
                             f"one element) is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        op = "" if self.op is None else f", op={self.op!r}"
        if self.size == 0 and self.dtype is not float64:  # no value to show the dtype
            op = f", dtype={self.dtype}" + op
        if self.size > _REPR_THRESHOLD:
            text = _summarised(self.data, self.shape, [_REPR_MAX_SHOWN])
            return f"Tensor({text}, shape={self.shape}{op})"
        return f"Tensor({self.data!r}{op})"

    def __format__(self, spec):
        """A one-element tensor formats like its float: f"{loss:.3f}"."""
        if not spec:
            return repr(self)
        _check_readable(self, f"format(t, {spec!r})")
        if self.size != 1:
            raise TypeError(f"format spec {spec!r} needs a tensor with one element; this one "
                            f"has shape {self.shape} (format t.tolist() instead)")
        return format(self.item(), spec)

    # NumPy: with __array_ufunc__ = None, NumPy's operators (array + t, np.float64(2) * t,
    # array @ t) return NotImplemented, so Python calls the tensor's reflected operator and
    # the result is a Tensor; otherwise NumPy would build an object array of 0-d tensors.
    __array_ufunc__ = None

    def __getitem__(self, key):
        return _getitem(self, key)

    # Arithmetic, comparisons and matmul: each operator is the function of the same name
    # (pow and abs here are rax's ops, not Python's builtins: see the top of the file).
    # (+, * and / call _binary as add, mul and div do: a call less, 3% of W4's instructions)
    def __add__(self, other): return _binary(add, self, other, _ADD, _add_vjps)
    def __radd__(self, other): return _binary(add, other, self, _ADD, _add_vjps)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __mul__(self, other): return _binary(mul, self, other, _MUL, _mul_vjps)
    def __rmul__(self, other): return _binary(mul, other, self, _MUL, _mul_vjps)
    def __truediv__(self, other): return _binary(div, self, other, _DIV, _div_vjps)
    def __rtruediv__(self, other): return _binary(div, other, self, _DIV, _div_vjps)
    def __pow__(self, other): return pow(self, other)
    def __rpow__(self, other): return pow(other, self)
    def __mod__(self, other): return mod(self, other)
    def __rmod__(self, other): return mod(other, self)
    def __floordiv__(self, other): return floor_divide(self, other)
    def __rfloordiv__(self, other): return floor_divide(other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __neg__(self): return neg(self)
    def __pos__(self): return self
    def __abs__(self): return abs(self)
    def __lt__(self, other): return less(self, other)
    def __le__(self, other): return less_equal(self, other)
    def __gt__(self, other): return greater(self, other)
    def __ge__(self, other): return greater_equal(self, other)
    def __eq__(self, other): return equal(self, other) if _comparable(other) else NotImplemented
    def __ne__(self, other):
        return not_equal(self, other) if _comparable(other) else NotImplemented
    def __invert__(self): return _bitwise(logical_not, "~", self)
    def __and__(self, other): return _bitwise(logical_and, "&", self, other)
    def __rand__(self, other): return _bitwise(logical_and, "&", other, self)
    def __or__(self, other): return _bitwise(logical_or, "|", self, other)
    def __ror__(self, other): return _bitwise(logical_or, "|", other, self)
    def __xor__(self, other): return _bitwise(logical_xor, "^", self, other)
    def __rxor__(self, other): return _bitwise(logical_xor, "^", other, self)
    # Identity, as object's (and PyTorch's), so tensors stay dict keys though == compares
    # values; rax's own code compares tensors with `is` and keys dicts by them.
    __hash__ = object.__hash__

    @property
    def T(self):
        """All axes reversed (as NumPy's .T)."""
        return transpose(self)

    def backward(self, seed=None):
        """The gradient graph of this tensor: see rax.backward and GradNode.

        >>> x = Tensor(3.0)
        >>> (x * x).backward()[x]
        Tensor(6.0, op='add')
        """
        return backward(self, seed)

    def __copy__(self):
        """The tensor itself: a tensor never changes, so a copy would be the same value."""
        return self

    def __deepcopy__(self, memo):
        """The tensor itself, at once, however long the graph behind it (see __copy__)."""
        return self

    def __reduce__(self):
        """Pickle the values, the shape and whether it is a constant; it unpickles as a leaf,
        since the vjp rules of a graph are code (often lambdas) and are not pickled."""
        _check_readable(self, "pickling")
        constant = self.op is None and bool(self.attrs.get("constant"))
        return _tensor_from_pickle, (self.data, self.shape, constant, str(self.dtype))


_new_object = object.__new__


def _node(op, forward, data, shape, inputs, vjps, attrs=_NO_ATTRS, dtype=None):
    """The output node of a primitive op: its value, and how it was made (the op's name, the
    function that computes it, the inputs, their vjp rules and the op's static arguments),
    and its dtype.

    `vjps` holds one rule per input (see chapter 2). A node refers only to its inputs, never
    to itself or to what consumes it, so a graph is freed as soon as nothing refers to its
    output, without the garbage collector.
    """
    out = _new_object(Tensor)  # skips __init__, which checks and copies user data
    out.data = data
    out.shape = shape
    out.op = op
    out.forward = forward
    out.inputs = inputs
    out.vjps = vjps
    out.attrs = attrs
    out.dtype = dtype or float64  # None: the usual float64 (see the dtypes above)
    if _traces_running:  # trace() is running in some thread: see chapter 10
        _record(out)
    return out


def _leaf(data, shape, dtype=None):
    """A new leaf tensor from data that is already nested lists of floats of `shape`."""
    return _node(None, None, data, shape, (), (), _NO_ATTRS, dtype)


def _as_tensor(value, op):
    """value as a float64 Tensor, for an op of arithmetic: see _as_any; a bool tensor is
    read as 0.0 and 1.0 through an astype node (the dtype rules at the top of chapter 1).
    A complex tensor is a TypeError: this op has no complex meaning."""
    if type(value) is Tensor and value.dtype is float64:  # the common cases, first
        return value
    if type(value) is float:
        return _constant(value)
    value = _as_any(value, op)
    if value.dtype is complex128:
        _no_complex(op)
    return value if value.dtype is float64 else _astype(value, float64)


def _filled(shape, value):
    """A constant of `shape` with every element `value`, for the seeds and zeros that rax
    makes itself (in backward, say): marked as a constant, so that it is never mistaken
    for data or a variable."""
    return _node(None, None, _full_lists(shape, value), shape, (), (), _CONSTANT,
                 {bool: bool_, complex: complex128}.get(type(value), float64))


def _tensor_from_pickle(data, shape, constant, dtype="float64"):
    """The leaf that pickle.loads makes of a pickled tensor (see Tensor.__reduce__)."""
    return _node(None, None, data, shape, (), (), _CONSTANT if constant else _NO_ATTRS,
                 _as_dtype(dtype, "pickle"))


# ============================================================================================
# 2. A few ops: how an op makes a node
#
# Each primitive op computes its output data with a kernel (appendix A) and makes a node with
# _node; right below it stand its vjp rules, one per input: rule(g, out, *inputs) is the
# gradient for that input (of that input's shape), given g, the gradient of out. Rules are
# written with tensor ops, so the gradients they build are differentiable in turn (grad of
# grad). A rule takes the inputs as arguments rather than closing over them, so making a node
# makes no closure (cheap, and nothing for the garbage collector to chase), and one rule serves
# every node of its op. The engine (chapter 3) calls a rule only when that input's gradient is
# wanted, and adds up the contributions when a tensor feeds several ops: a rule never adds
# into anything.
#
# Six ops show the main kinds: exp (one input), add and mul (two inputs, broadcast together
# first), broadcast_to (the one op that repeats values, whose rule sums them back), sum (a
# reduction) and matmul. Chapter 4 has the rest, written the same way, and adds indexing,
# where, and ops whose rules are None (no gradient flows through them).
# ============================================================================================

# ---- 2a. One input: exp --------------------------------------------------------------------

class _Elementwise:
    """How an elementwise primitive computes each element, said once, beside the op: the op,
    a program's replay and its compiled code (chapter 10) all read it, so they cannot drift.

    expr   the computation as a Python expression over the operands {0}, {1}, ...
    fn     the same as the function eager rax maps over the elements (C's where there is
           one, such as math.exp, which runs at C speed).
    safe   the name of fn's IEEE-safe twin (appendix B), for where fn raises (exp(1000)),
           or None if fn never raises.
    rows   instead of fn, for an expr that is no C function (relu's 0.0 if v < 0.0 else v):
           the same as a comprehension over a row, run on each innermost row (see rowwise).
    on_complex  the rule for complex operands, given as (expr, fn, safe[, dtype]) with
           cmath's functions and appendix B's twins, or None: the op refuses complex128.
    dtype  the output dtype of a complex twin (complex128; float64 for abs).

    A function defined further down is given by name, and looked up at the end of the file
    (_resolve_rules). A test checks on special values that all four agree bit for bit.
    """

    __slots__ = ("expr", "fn", "safe", "rows", "safe_fn", "on_complex", "dtype")

    def __init__(self, expr, fn=None, safe=None, rows=None, on_complex=None, dtype=None):
        self.expr, self.fn, self.safe, self.rows, self.safe_fn = expr, fn, safe, rows, None
        self.dtype = dtype
        self.on_complex = on_complex and _Elementwise(*on_complex[:3], dtype=(
            on_complex[3:] or ("complex128",))[0])

    def __call__(self, operands, ndim):
        """The op on equally shaped nested lists: fn, redone with the safe twin only if fn
        raises somewhere (see elementwise), so that the common case pays nothing for it."""
        if self.rows is not None:
            return rowwise(self.rows, operands, ndim)
        return elementwise(self.fn, operands, ndim, self.safe_fn)

    def safe_expr(self):
        """expr with the safe twin in place of fn, for compiled code (chapter 10)."""
        arity = len(set(re.findall(r"\{\d\}", self.expr)))
        return f"{self.safe}({', '.join('{%d}' % i for i in range(arity))})" \
            if self.safe else self.expr


class _Kernel:
    """The same for a primitive that is not elementwise: the name of its kernel (appendix
    A), and args(in_shapes, attrs, shape), what the kernel takes after the input data (as
    one list if listed); name None for an op whose output is its input; on_complex the
    _Kernel for complex inputs, where it differs (sum's adds from 0j)."""

    __slots__ = ("name", "args", "listed", "on_complex")

    def __init__(self, name, args=lambda shapes, attrs, shape: (), listed=False,
                 on_complex=None):
        self.name, self.args, self.listed, self.on_complex = name, args, listed, on_complex


_RULES = {}  # every primitive's _Elementwise or _Kernel, by op name, for chapter 10


def _unary(forward, x, rule, vjps):
    """The output node of the elementwise op `forward` on one tensor, computed by its
    _Elementwise rule (its complex twin for a complex x)."""
    op = forward.__name__
    dtype = None
    if type(x) is not Tensor or x.dtype is not float64:
        x = _as_tensor(x, op) if rule.on_complex is None else _as_num(x, op)
        if x.dtype is complex128:
            rule = rule.on_complex
            dtype = rule.dtype
    operands, ndim = (x.data,), len(x.shape)
    # rule(operands, ndim), written out: a call less per op makes W4 6% faster.
    data = elementwise(rule.fn, operands, ndim, rule.safe_fn) if rule.rows is None else \
        rowwise(rule.rows, operands, ndim)
    return _node(op, forward, data, x.shape, (x,), vjps, _NO_ATTRS, dtype)


def exp(x):
    """e ** x.   d/dx exp(x) = exp(x)

    >>> exp(Tensor([0, 1000]))
    Tensor([1.0, inf], op='exp')
    """
    return _unary(exp, x, _EXP, _exp_vjps)


_EXP = _RULES["exp"] = _Elementwise("exp({0})", math.exp, safe="_exp",
                                    on_complex=("_cexp({0})", cmath.exp, "_cexp"))
_exp_vjps = (lambda g, out, x: g * out,)


# ---- 2b. Two inputs: add and mul -----------------------------------------------------------

def _binary(forward, x, y, rule, vjps, dtype=None):
    """The output node of the elementwise op `forward` on two tensors, broadcast together
    (NumPy's rule, with broadcast_to nodes, so that no binary rule has to undo broadcasting),
    computed by its _Elementwise rule. dtype None is arithmetic: the operands are read as
    float64 (a bool as 0.0 or 1.0), as is the result; for an op that makes bools, dtype is
    bool_ and the caller has made the operands tensors of the dtypes it takes."""
    op = forward.__name__
    if dtype is None and (type(x) is not Tensor or x.dtype is not float64 or  # (tested here,
                          type(y) is not Tensor or y.dtype is not float64):  # 4% of W4)
        if type(y) is float and type(x) is Tensor and x.dtype is float64:  # x * 2.0: 4.5%
            y = _constant(y)
        else:
            x, y, rule, dtype = _promoted(op, x, y, rule)
    if x.shape != y.shape:  # (x * 2.0 spreads the number, with no shapes to reconcile)
        shape = x.shape if not y.shape else _check_size(
            op, _broadcast_shapes(op, x.shape, y.shape))
        x, y = _broadcast(x, shape), _broadcast(y, shape)
    operands, ndim = (x.data, y.data), len(x.shape)
    if ndim or rule.rows is not None:
        data = elementwise(rule.fn, operands, ndim, rule.safe_fn) if rule.rows is None else \
            rowwise(rule.rows, operands, ndim)  # rule(operands, ndim), as in _unary
    else:  # two numbers: elementwise's first case, written out (W4 eager: -5% instructions)
        try:
            data = rule.fn(*operands)
        except (ArithmeticError, ValueError):
            data = elementwise(rule.fn, operands, 0, rule.safe_fn)
    return _node(op, forward, data, x.shape, (x, y), vjps, _NO_ATTRS, dtype)


def add(x, y):
    """x + y.   d/dx = 1, d/dy = 1

    >>> add(Tensor([[1], [2]]), Tensor([10, 20]))
    Tensor([[11.0, 21.0], [12.0, 22.0]], op='add')
    """
    return _binary(add, x, y, _ADD, _add_vjps)


_ADD = _RULES["add"] = _Elementwise("{0} + {1}", operator.add,
                                    on_complex=("{0} + {1}", operator.add))
_add_vjps = (lambda g, out, x, y: g,
             lambda g, out, x, y: g)


def mul(x, y):
    """x * y.   d/dx = y, d/dy = x

    >>> mul(Tensor([1, 2]), 3)
    Tensor([3.0, 6.0], op='mul')
    """
    return _binary(mul, x, y, _MUL, _mul_vjps)


_MUL = _RULES["mul"] = _Elementwise("{0} * {1}", operator.mul,
                                    on_complex=("{0} * {1}", operator.mul))
_mul_vjps = (lambda g, out, x, y: g * y,
             lambda g, out, x, y: g * x)


# ---- 2c. Broadcasting: broadcast_to --------------------------------------------------------

def broadcast_to(x, shape):
    """x repeated along new leading axes and along sides of 1, as numpy.broadcast_to.

    The gradient sums g over the repeated axes (_sum_to): the one place where rax undoes
    broadcasting, since binary ops broadcast their operands with this op first.

    >>> broadcast_to(Tensor([1, 2]), (2, 2))
    Tensor([[1.0, 2.0], [1.0, 2.0]], op='broadcast_to')
    """
    x = _as_any(x, "broadcast_to")
    shape = _as_shape("broadcast_to", shape)
    lead = len(shape) - len(x.shape)
    if lead < 0 or any(n != m and n != 1 for n, m in zip(x.shape, shape[lead:])):
        raise ValueError(f"broadcast_to: cannot broadcast a tensor of shape {x.shape} "
                         f"to shape {shape}")
    return _broadcast(x, shape)


def _broadcast(x, shape):
    """broadcast_to, for a shape already checked (by _broadcast_shapes, say)."""
    if shape == x.shape:
        return x
    data = broadcast_lists(x.data, x.shape, shape)
    return _node("broadcast_to", broadcast_to, data, shape, (x,), _broadcast_to_vjps,
                 {"shape": shape}, x.dtype)


_RULES["broadcast_to"] = _Kernel("broadcast_lists", lambda shapes, attrs, shape: (shapes[0], shape))
_broadcast_to_vjps = (lambda g, out, x: _sum_to(g, x.shape),)


def _sum_to(g, shape):
    """Sum g over the axes that broadcasting from `shape` added or stretched."""
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(tuple(range(lead)) + stretched).reshape(shape)


# ---- 2d. A reduction: sum ------------------------------------------------------------------

def _reduce(forward, x, axis, keepdims, fn, vjps, dtype=None):
    """The output node of the reduction `forward` of x over `axis`, with fn (see
    reduce_lists)."""
    op = forward.__name__
    axes = _normalize_axes(op, axis, x.ndim)
    shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    if keepdims:
        shape = _kept_shape(x.shape, axes)
    data = reduce_lists(x.data, x.shape, axes, fn, shape)
    return _node(op, forward, data, shape, (x,), vjps, {"axis": axes, "keepdims": keepdims},
                 dtype)


def _reduction(fn, on_complex=None):
    """The _Kernel of a reduction by fn (_sum_of, _max_of, ...), given by its name."""
    return _Kernel("reduce_lists", lambda shapes, attrs, shape: (shapes[0], attrs["axis"],
                                                                  _Name(fn), shape),
                   on_complex=on_complex and _reduction(on_complex))


def _normalize_axes(op, axis, ndim):
    """axis (None, an int or a tuple of ints) as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, (numbers.Integral, tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    axes = tuple(sorted(_normalize_axis(op, a, ndim) for a in axes))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return axes


def _kept_shape(shape, axes):
    """shape with the reduced axes kept as sides of 1 (the shape keepdims=True gives)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def sum(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The sum over `axis` (None: all axes; an int or a tuple).   d/dx = 1 for every element

    >>> sum(Tensor([[1, 2], [3, 4]]), axis=0)
    Tensor([4.0, 6.0], op='sum')
    """
    _no_dim("sum", dim, dtype, out)
    x = _as_num(x, "sum")
    fn = _csum_of if x.dtype is complex128 else _sum_of  # complex numbers add from 0j
    return _reduce(sum, x, axis, keepdims, fn, _sum_vjps, x.dtype)


_RULES["sum"] = _reduction("_sum_of", "_csum_of")
# g copied back along the summed axes.
_sum_vjps = (lambda g, out, x: _broadcast(g.reshape(_kept_shape(x.shape, out.attrs["axis"])),
                                          x.shape),)


# ---- 2e. matmul ----------------------------------------------------------------------------

def matmul(x, y):
    """The matrix product x @ y, with NumPy's rules.

    2-D: (n, k) @ (k, m) -> (n, m), and d/dx = g @ y^T, d/dy = x^T @ g. A 1-D x is a row
    and a 1-D y a column: they are made 2-D, and the result reshaped back without that
    axis. More axes are a batch of matrices, broadcast together.

    >>> matmul(Tensor([[1, 2], [3, 4]]), Tensor([1, 1]))  # a reshape of a (2, 1) matmul
    Tensor([3.0, 7.0], op='reshape')
    """
    x, y = _as_num(x, "matmul"), _as_num(y, "matmul")
    if x.dtype is not y.dtype:  # one complex: both complex (chapter 5h)
        x, y = _one_dtype((x, y))
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one axis, got shapes "
                         f"{x.shape} and {y.shape}")
    inner = y.shape[-2 if y.ndim > 1 else 0]
    if x.shape[-1] != inner:
        raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not align: "
                         f"{x.shape[-1]} (last axis of x) != {inner} (rows of y)")
    try:
        batch = _broadcast_shapes("matmul", x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: the batch axes of shapes {x.shape} and {y.shape} cannot be "
                         f"broadcast together") from None
    shape = _check_size("matmul", batch + x.shape[-2:-1] + (y.shape[-1:] if y.ndim > 1 else ()))
    if x.ndim == 1:
        x = x.reshape((1,) + x.shape)  # a row
    if y.ndim == 1:
        y = y.reshape(y.shape + (1,))  # a column
    if x.shape[:-2] != batch:
        x = _broadcast(x, batch + x.shape[-2:])
    if y.shape[:-2] != batch:
        y = _broadcast(y, batch + y.shape[-2:])
    out = _matmul(x, y)
    return out if out.shape == shape else out.reshape(shape)


def _matmul(x, y):
    """x @ y for tensors of >= 2 axes with the same batch axes."""
    *batch, n, k = x.shape
    shape = (*batch, n, y.shape[-1])
    # k == 0: every dot product is empty, so every element is 0.0 (0j for complex).
    kernel = complex_matmul_lists if x.dtype is complex128 else matmul_lists
    return _node("matmul", _matmul, kernel(x.data, y.data, shape, k), shape, (x, y),
                 _matmul_vjps, _NO_ATTRS, x.dtype)


_RULES["matmul"] = _Kernel("matmul_lists", lambda shapes, attrs, shape: (shape, shapes[0][-1]),
                           on_complex=_Kernel("complex_matmul_lists", lambda shapes, attrs,
                                              shape: (shape, shapes[0][-1])))


def _swap_last(t):
    """t with its last two axes swapped: the transpose of each matrix in a batch."""
    return t.transpose(tuple(range(t.ndim - 2)) + (t.ndim - 1, t.ndim - 2))


# d/dx = g @ y^T, d/dy = x^T @ g
_matmul_vjps = (lambda g, out, x, y: _matmul(g, _swap_last(y)),
                lambda g, out, x, y: _matmul(_swap_last(x), g))


# ============================================================================================
# 3. Autodiff: backward, the gradient graph, grad
#
# backward(t) walks t's graph once to learn which ops consume each tensor, and returns the
# gradient graph: a GradNode for t, mirroring it. The value of a node, d t / d(its primal),
# is the sum over the primal's consumers of what their vjp rules give: this is the chain
# rule, since x reaches t through each op c that consumes it, so dt/dx is the sum over those
# c of vjp_c(dt/dc). A node's value thus needs its consumers' values first. Values are
# computed only when read: _fill waits on a stack until a node's consumers have values,
# which is a topological order of just what is asked for. So asking for the weights'
# gradients never pays for the gradient with respect to the input data (for x @ w, d/dx is
# a matmul as large as d/dw). grad and value_and_grad (JAX's) are backward applied to a
# function's arguments.
# ============================================================================================

def backward(t, seed=None):
    """The gradient graph of t, a GradNode mirroring t (see GradNode).

    `seed` is the gradient arriving from whatever uses t, of t's shape: each value in the
    graph is the sum over t's elements of seed times d(that element) / d(the node). It may
    be left out when t has one element (it is then 1).

    >>> x = Tensor([1.0, 2.0])
    >>> backward(x * x, seed=[1.0, 10.0])[x]
    Tensor([2.0, 40.0], op='add')
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"backward: expected a Tensor, got {type(t).__name__}")
    if t.dtype is bool_:
        raise TypeError("backward: the tensor is a bool tensor (made by a comparison): no "
                        "gradient flows through bools")
    if seed is None:
        if t.size != 1:
            raise ValueError(f"backward: a tensor of shape {t.shape} needs a seed of that shape; "
                             f"only a tensor with one element has the default seed 1")
        seed = _filled(t.shape, 1.0)
    seed = _seed_of(t, seed)
    if seed.shape != t.shape:
        raise ValueError(f"backward: the seed has shape {seed.shape}, "
                         f"but the tensor has shape {t.shape}")
    return _GradientGraph(t, seed).node(t)


class _GradientGraph:
    """What the nodes of one gradient graph share: who consumes each tensor, and the values
    found so far (None for a tensor that no gradient reaches).

    The graph holds its GradNodes weakly (each node holds the graph), so that nothing here is
    a reference cycle: a graph and its gradients are freed by reference counting alone, as
    soon as the last GradNode goes. A node kept by the user stays the one node of its tensor.
    """

    __slots__ = ("consumers", "values", "nodes")

    def __init__(self, root, seed, stop=frozenset()):
        # One walk over the forward graph, with a stack rather than recursion, so a chain of
        # 100,000 ops is fine. consumers[x] lists each op that took x as an input, once.
        # Tensors in `stop` count as leaves: the walk does not go below them.
        consumers = {root: []}
        stack = [root]
        while stack:
            t = stack.pop()
            if t in stop:
                continue
            for x in t.inputs:
                users = consumers.get(x)
                if users is None:
                    consumers[x] = [t]
                    if x.inputs:  # a leaf has nothing below it to walk
                        stack.append(x)
                elif users[-1] is not t:  # t may take x twice, as in x * x
                    users.append(t)
        self.consumers = consumers
        self.values = {root: seed}
        self.nodes = weakref.WeakValueDictionary()

    def node(self, t):
        """The one GradNode of tensor t in this graph."""
        node = self.nodes.get(t)
        if node is None:
            node = self.nodes[t] = GradNode(t, self)
        return node

    def value(self, t):
        """d root / d t, computing what it needs first (t must be in the graph)."""
        if t not in self.values:
            self._fill(t)
        value = self.values[t]
        return _filled(t.shape, _ZERO_OF[t.dtype]) if value is None else value

    def _fill(self, t):
        """Compute the value of t, and first those of the consumers it needs: a node leaves
        the stack only when all its consumers have values (a walk, not a recursion)."""
        values, consumers = self.values, self.consumers
        stack = [t]
        while stack:
            u = stack[-1]
            waiting = False
            for c in consumers[u]:
                if c not in values:
                    stack.append(c)
                    waiting = True
            if not waiting:
                stack.pop()
                if u not in values:  # u may have been pushed by more than one consumer
                    state = _current_trace() if _traces_running else None
                    start = len(state.nodes) if state is not None else 0
                    values[u] = self._sum_contributions(u)
                    if state is not None:  # a trace marks the backward pass's nodes
                        state.backward.update(state.nodes[start:])

    def _sum_contributions(self, t):
        """The sum over t's consumers of their vjp rules for t; None if no gradient flows."""
        total = None
        for consumer in self.consumers[t]:
            g = self.values[consumer]
            if g is None:
                continue
            inputs = consumer.inputs
            for i, rule in enumerate(consumer.vjps):
                if inputs[i] is not t or rule is None:
                    continue
                try:
                    contribution = rule(g, consumer, *inputs)
                except Exception as error:
                    _add_note(error, f"in the vjp rule of {consumer.op!r} for input {i} "
                                     f"({_source_location(rule)})")
                    raise
                if not isinstance(contribution, Tensor) or contribution.dtype is not t.dtype:
                    contribution = _cotangent(contribution, t, consumer.op)  # (5h)
                if contribution.shape != t.shape:
                    raise ValueError(f"the vjp rule of {consumer.op!r} for input {i} "
                                     f"({_source_location(rule)}) gave shape {contribution.shape}, "
                                     f"but that input has shape {t.shape}")
                total = contribution if total is None else total + contribution
        return total


class GradNode:
    """A node of the gradient graph: the derivative of the graph's root w.r.t. `primal`.

    Attributes:
        primal: the forward tensor this node mirrors.
        inputs: the nodes mirroring primal.inputs, in the same order; () for a leaf. A
            tensor reached by several paths has one node, as in the forward graph.
        value: d root / d primal, weighted by the seed (see backward): a Tensor of
            primal's shape, computed when first read.

    Any node also answers for the whole graph: ``g[x]`` is d root / d x for any tensor x
    (zeros where x is not in the graph), ``x in g`` says whether it is, and ``g.wrt(tree)``
    puts the gradient in place of each tensor of a tree.

    >>> x = Tensor(3.0)
    >>> y = x * x + x
    >>> g = y.backward()
    >>> g.primal is y, g.value
    (True, Tensor(1.0))
    >>> [node.primal.op for node in g.inputs]
    ['mul', None]
    >>> g[x]
    Tensor(7.0, op='add')
    """

    __slots__ = ("primal", "_graph", "__weakref__")

    def __reduce__(self):
        raise TypeError("a gradient graph (GradNode) is not pickled: its nodes hold the "
                        "forward graph's rules; save the gradients themselves, "
                        "g.wrt(params) (a tree of tensors), with pickle or rax.save")

    def __init__(self, primal, graph):
        self.primal, self._graph = primal, graph

    @property
    def value(self):
        return self._graph.value(self.primal)

    @property
    def inputs(self):
        return tuple(self._graph.node(x) for x in self.primal.inputs)

    def __getitem__(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"g[x]: x must be a Tensor, got {type(x).__name__}")
        return self._graph.value(x) if x in self._graph.consumers else \
            _filled(x.shape, _ZERO_OF[x.dtype])

    def __contains__(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"x in g: x must be a Tensor, got {type(x).__name__}")
        return x in self._graph.consumers

    def wrt(self, tree):
        """tree with each Tensor leaf replaced by its gradient (a number's is 0.0).

        >>> w = Tensor([1.0, 2.0])
        >>> (w * w).sum().backward().wrt({"w": w, "lr": 0.1})
        {'lr': Tensor(0.0), 'w': Tensor([2.0, 4.0], op='add')}
        """
        return tree_map(self._of_leaf, tree)

    def _of_leaf(self, leaf):
        if isinstance(leaf, Tensor):
            return self[leaf]
        if isinstance(leaf, numbers.Number):
            return _filled((), 0.0 if isinstance(leaf, numbers.Real) else 0j)
        raise TypeError(f"g.wrt: the leaves of the tree must be Tensors or numbers, "
                        f"got {leaf!r} ({type(leaf).__name__})")

    def __repr__(self):
        return f"GradNode(op={self.primal.op!r}, shape={self.primal.shape}, value={self.value!r})"


def value_and_grad(f, argnums=0, has_aux=False, holomorphic=False):
    """A function returning f's value and its gradient w.r.t. args[argnums] (as JAX).

    f must return a tensor with one element, or (that tensor, aux) when has_aux is true.
    The gradient has the structure of args[argnums]: a Tensor, a tree of them, or a 0-d
    Tensor for a number; a tuple of these when argnums is a tuple. Each leaf of a
    differentiated argument counts as its own variable, even if the same Tensor appears
    twice; a tensor that f uses without receiving it as such an argument is held fixed: no
    gradient is taken for it.

    >>> loss, g = value_and_grad(lambda w, x: (w * x).sum())(Tensor([1.0, 2.0]), Tensor([3.0, 4.0]))
    >>> loss, g
    (Tensor(11.0, op='sum'), Tensor([3.0, 4.0], op='mul'))
    """
    positions = _as_argnums(f, argnums)

    def value_and_grad_f(*args, **kwargs):
        _check_argnums_range("grad", argnums, positions, args)
        # Each leaf of a differentiated argument becomes a new identity node, and the walk
        # below stops there. The gradient, built from tensor ops on that node, still hangs
        # below the caller's tensor, so an outer grad can differentiate it again.
        args = list(args)
        for p in positions:
            args[p] = tree_map(_as_argument, args[p])
        arguments = frozenset(leaf for p in positions for leaf in tree_leaves(args[p]))
        out = _differentiating(arguments, f, *args, **kwargs)
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("grad with has_aux=True: f must return a pair (loss, aux)")
            loss, aux = out
        else:
            loss = out
        if isinstance(loss, Tensor) and loss.dtype is bool_:
            raise TypeError("grad: f returned a bool tensor: no gradient flows through bools "
                            "(as JAX's grad); return a float loss")
        if not isinstance(loss, Tensor) or loss.size != 1:
            what = f"shape {loss.shape}" if isinstance(loss, Tensor) else \
                f"a {type(loss).__name__} ({_text(loss):.40})"
            raise TypeError(f"grad: f must return a Tensor with one element, got {what}: "
                            f"gradients are defined for a one-element tensor (a loss) "
                            f"computed from the arguments, as JAX's grad")
        # The walk stops at the arguments: what made them (a previous step of a loop, say)
        # does not matter here, and may be long.
        seed = _loss_seed(loss, arguments, holomorphic)  # 1 (chapter 5h for complex)
        g = _GradientGraph(loss, seed, arguments).node(loss)
        grads = tuple(g.wrt(args[p]) for p in positions)
        if isinstance(argnums, numbers.Integral):
            grads = grads[0]
        return ((loss, aux) if has_aux else loss), grads

    return value_and_grad_f


def grad(f, argnums=0, has_aux=False, holomorphic=False):
    """A function returning the gradient of f w.r.t. args[argnums] (as jax.grad).

    See value_and_grad. With has_aux the function returns (gradient, aux). The gradient is
    itself differentiable, so grad(grad(f)) is the second derivative.

    >>> f = lambda x: x ** 3
    >>> grad(f)(3.0).item(), grad(grad(f))(3.0).item()  # 3 x**2 and 6 x
    (27.0, 18.0)
    """
    value_and_grad_f = value_and_grad(f, argnums, has_aux, holomorphic)

    def grad_f(*args, **kwargs):
        value, grads = value_and_grad_f(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return grad_f


def _as_argument(leaf):
    """A leaf of a differentiated argument as its own node (see value_and_grad)."""
    if _is_bool(leaf):
        raise TypeError(f"grad: cannot differentiate with respect to a bool ({_dtype_text(leaf)})"
                        f": no gradient flows to bools (as in JAX); differentiate with respect "
                        f"to a float argument, or pass the mask by closure")
    if isinstance(leaf, Tensor):
        return _identity(leaf)
    if isinstance(leaf, numbers.Number) or _has_tolist(leaf):  # a number, a NumPy array
        return Tensor(leaf)  # a new leaf: a variable, never a shared constant
    raise TypeError(f"grad: the leaves of a differentiated argument must be Tensors, arrays "
                    f"or numbers, got {leaf!r} ({type(leaf).__name__})")


def _identity(x):
    """The same tensor as a new node; grad uses it to give each argument a node of its own."""
    return _node("identity", _identity, x.data, x.shape, (x,), _identity_vjps, _NO_ATTRS, x.dtype)


_RULES["identity"] = _Kernel(None)
_identity_vjps = (lambda g, out, x: g,)


def _check_function(op, f):
    if not callable(f):
        raise TypeError(f"{op}: f must be a function, got {f!r} ({type(f).__name__})")


def _differentiating(arguments, f, /, *args, **kwargs):
    """f(*args, **kwargs), while this thread knows that `arguments` are being differentiated
    (so that a jitted f inside runs as ops: see _differentiated, chapter 10)."""
    running = _this_thread.__dict__.setdefault("differentiated", [])
    running.append(arguments)
    try:
        return f(*args, **kwargs)
    finally:
        running.pop()


def _check_argnums_range(op, argnums, positions, args):
    for p in positions:
        if not -len(args) <= p < len(args):
            raise ValueError(f"{op}: argnums {argnums} asks for argument {p}, but f got "
                             f"{len(args)} positional arguments")


def _as_argnums(f, argnums, op="grad"):
    """argnums as a tuple of ints, checking f and argnums when grad is called."""
    _check_function(op, f)
    positions = (argnums,) if isinstance(argnums, numbers.Integral) else argnums
    if not isinstance(positions, (tuple, list)) or not positions or not all(
            isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in positions):
        raise TypeError(f"{op}: argnums must be an int or a non-empty tuple of ints, "
                        f"got {argnums!r}")
    positions = tuple(operator.index(p) for p in positions)
    if len(set(positions)) != len(positions):
        raise ValueError(f"{op}: argnums {argnums} names an argument twice")
    return positions


# ============================================================================================
# 4. More primitives
#
# The rest of rax's primitives, by family, each written as the ops of chapter 2: the forward
# computed with a kernel, its vjp rules right below it.
# ============================================================================================

# ---- 4a. One input -------------------------------------------------------------------------
#
# relu's row rule and those of maximum, minimum, where and the comparisons (4b) are
# comprehensions over a row, kept with the kernels in appendix A (_relu_rows, ...).

def neg(x):
    """-x.   d/dx (-x) = -1

    >>> neg(Tensor([1, -2]))
    Tensor([-1.0, 2.0], op='neg')
    """
    _no_bool_minus("neg", x)
    return _unary(neg, x, _NEG, _neg_vjps)


_NEG = _RULES["neg"] = _Elementwise("-{0}", operator.neg,
                                    on_complex=("-{0}", operator.neg))
_neg_vjps = (lambda g, out, x: -g,)


def log(x):
    """The natural logarithm.   d/dx log(x) = 1 / x

    >>> log(Tensor([1, 0, -1]))
    Tensor([0.0, -inf, nan], op='log')
    """
    return _unary(log, x, _LOG, _log_vjps)


_LOG = _RULES["log"] = _Elementwise("log({0})", math.log, safe="_log",
                                    on_complex=("_clog({0})", cmath.log, "_clog"))
_log_vjps = (lambda g, out, x: g / x,)


def sqrt(x):
    """The square root.   d/dx sqrt(x) = 1 / (2 sqrt(x))

    >>> sqrt(Tensor([4, -1]))
    Tensor([2.0, nan], op='sqrt')
    """
    return _unary(sqrt, x, _SQRT, _sqrt_vjps)


_SQRT = _RULES["sqrt"] = _Elementwise("sqrt({0})", math.sqrt, safe="_sqrt",
                                      on_complex=("_csqrt({0})", cmath.sqrt))
_sqrt_vjps = (lambda g, out, x: g / (2.0 * out),)


def sin(x):
    """The sine.   d/dx sin(x) = cos(x)

    >>> sin(Tensor(0))
    Tensor(0.0, op='sin')
    """
    return _unary(sin, x, _SIN, _sin_vjps)


_SIN = _RULES["sin"] = _Elementwise("sin({0})", math.sin, safe="_sin",
                                    on_complex=("_csin({0})", cmath.sin, "_csin"))
_sin_vjps = (lambda g, out, x: g * cos(x),)


def cos(x):
    """The cosine.   d/dx cos(x) = -sin(x)

    >>> cos(Tensor(0))
    Tensor(1.0, op='cos')
    """
    return _unary(cos, x, _COS, _cos_vjps)


_COS = _RULES["cos"] = _Elementwise("cos({0})", math.cos, safe="_cos",
                                    on_complex=("_ccos({0})", cmath.cos, "_ccos"))
_cos_vjps = (lambda g, out, x: g * -sin(x),)


def tanh(x):
    """The hyperbolic tangent.   d/dx tanh(x) = 1 - tanh(x)**2

    >>> tanh(Tensor([0, inf]))
    Tensor([0.0, 1.0], op='tanh')
    """
    return _unary(tanh, x, _TANH, _tanh_vjps)


_TANH = _RULES["tanh"] = _Elementwise("tanh({0})", math.tanh,
                                      on_complex=("_ctanh({0})", "_ctanh"))
_tanh_vjps = (lambda g, out, x: g * (1.0 - out * out),)


def relu(x):
    """max(x, 0).   d/dx relu(x) = 1 where relu(x) > 0, else 0 (so 0 at the kink x = 0)

    >>> relu(Tensor([-1, 0, 2]))
    Tensor([0.0, 0.0, 2.0], op='relu')
    """
    return _unary(relu, x, _RELU, _relu_vjps)


_RELU = _RULES["relu"] = _Elementwise("(0.0 if {0} < 0.0 else {0})", rows="_relu_rows")
# relu's rule is where(out <= 0, 0, g), fused into one pass for speed (relu is everywhere),
# as PyTorch's threshold_backward.
_relu_vjps = (lambda g, out, x: _relu_backward(g, out),)


def _relu_backward(g, out):
    """g where out > 0, else 0: the gradient of relu. It is linear in g, so its own rule for
    g is itself; out, a mask here, gets none."""
    data = _RELU_BACKWARD((g.data, out.data), g.ndim)
    return _node("relu_backward", _relu_backward, data, g.shape, (g, out),
                  _relu_backward_vjps)


_RELU_BACKWARD = _RULES["relu_backward"] = _Elementwise("(0.0 if {1} <= 0.0 else {0})",
                                                        rows="_relu_backward_rows")
_relu_backward_vjps = (lambda g2, out2, g, out: _relu_backward(g2, out), None)


def abs(x):
    """|x|.   d/dx |x| = sign(x), which is 0 at the kink x = 0

    >>> abs(Tensor([-2, 0, 3]))
    Tensor([2.0, 0.0, 3.0], op='abs')
    """
    if isinstance(x, Tensor) and x.dtype is bool_:
        return x  # |a bool| is the bool, as NumPy's
    return _unary(abs, x, _ABS, _abs_vjps)


_ABS = _RULES["abs"] = _Elementwise("abs({0})", _abs,
                                    on_complex=("_cabs({0})", _abs, "_cabs", "float64"))
_abs_vjps = (lambda g, out, x: _abs_vjp(g, out, x),)  # g sign(x); complex: chapter 5h


def stop_gradient(x):
    """The same values, but no gradient flows back through them.

    >>> x = Tensor(3.0)
    >>> grad(lambda x: x * stop_gradient(x))(x).item()
    3.0
    """
    x = _as_any(x, "stop_gradient")
    return _node("stop_gradient", stop_gradient, x.data, x.shape, (x,), (None,), _NO_ATTRS,
                 x.dtype)


_RULES["stop_gradient"] = _Kernel(None)


# ---- 4b. Two inputs, and where -------------------------------------------------------------

def sub(x, y):
    """x - y.   d/dx = 1, d/dy = -1

    >>> sub(1, Tensor([1, 2]))
    Tensor([0.0, -1.0], op='sub')
    """
    if _is_bool(x) and _is_bool(y):
        _no_bool_minus("sub", x)
    return _binary(sub, x, y, _SUB, _sub_vjps)


_SUB = _RULES["sub"] = _Elementwise("{0} - {1}", operator.sub,
                                    on_complex=("{0} - {1}", operator.sub))
_sub_vjps = (lambda g, out, x, y: g,
             lambda g, out, x, y: -g)


def div(x, y):
    """x / y, with 1/0 = inf and 0/0 = nan.   d/dx = 1/y, d/dy = -x/y**2 = -out/y

    >>> div(Tensor([1, 0, -1]), 0)
    Tensor([inf, nan, -inf], op='div')
    """
    return _binary(div, x, y, _DIV, _div_vjps)


_DIV = _RULES["div"] = _Elementwise("{0} / {1}", operator.truediv, safe="_div",
                                    on_complex=("{0} / {1}", operator.truediv, "_cdiv"))
_div_vjps = (lambda g, out, x, y: g / y,
             lambda g, out, x, y: -g * (out / y))  # not x / y**2, which overflows sooner


def pow(x, y):
    """x ** y, as numpy.power on floats.   d/dx = y x**(y-1), d/dy = x**y log(x)

    As PyTorch, d/dx is 0 where y = 0, and d/dy is 0 where x = 0 and y >= 0. A number y
    is not a tensor input but the exponent of the one-input op pow_scalar (see _power), as
    in PyTorch.

    >>> pow(Tensor([2, -8, 0]), Tensor([3, 1/3, -1]))
    Tensor([8.0, nan, inf], op='pow')
    >>> pow(Tensor([1, 2, 3]), 2)
    Tensor([1.0, 4.0, 9.0], op='pow_scalar')
    """
    if isinstance(y, numbers.Real) and not isinstance(x, numbers.Real):
        return _power(x, _scalar("pow", "the exponent", y))
    return _binary(pow, x, y, _POW, _pow_vjps)


_POW = _RULES["pow"] = _Elementwise("_pow({0}, {1})", "_pow",
                                    on_complex=("_cpow({0}, {1})", "_cpow"))
# Placed as in PyTorch: d/dx drops an inf or nan in g where y = 0; d/dy keeps it (nan).
_pow_vjps = (lambda g, out, x, y: where(equal(y, 0.0), 0.0, g * (y * x ** (y - 1.0))),
             lambda g, out, x, y: g * _where_zero_base(x, y, out))


def _where_zero_base(x, y, out):
    """out * log(x), but 0 where x = 0 and y >= 0, with log read at 1 there, so that its own
    derivative (d2/dy2 of x ** y) is 0 too, not 0 * inf = nan (the double where)."""
    zero = equal(x, 0.0) if x.dtype is complex128 else equal(x, 0.0) * (y >= 0.0)
    return where(zero, 0.0, out * log(where(zero, 1.0, x)))


def _power(x, exponent):
    """x ** exponent for a number exponent, kept in attrs.   d/dx = exponent x**(exponent-1)

    x ** 2 is everywhere (square, squared errors), and a rule with a number exponent takes
    half the ops of the rule for a tensor exponent.
    """
    x, rule = _as_num(x, "pow"), _power_rule(exponent)
    if x.dtype is complex128:
        rule = rule.on_complex
    data = rule((x.data, _full_lists(x.shape, exponent)), x.ndim)
    return _node("pow_scalar", _power, data, x.shape, (x,), _power_vjps,
                 {"exponent": exponent}, rule.dtype)


def _power_rule(exponent):
    """The rule of x ** exponent, with the exponent as a second operand: C's pow for an
    integer exponent, with _pow only where it raises (0.0 ** -1); _pow always otherwise,
    since a negative base would give Python a complex number, not nan."""
    return _POW_INTEGER if exponent.is_integer() else _POW


_POW_INTEGER = _Elementwise("{0} ** {1}", operator.pow, safe="_pow",
                            on_complex=("_cpow({0}, {1})", "_cpow"))


def _power_vjp(g, out, x):
    exponent = out.attrs["exponent"]
    if exponent == 0.0:
        return _filled(x.shape, 0.0)  # as PyTorch: x ** 0 is 1, whatever g is
    return g * (exponent * x ** (exponent - 1.0))


_power_vjps = (_power_vjp,)


def maximum(x, y):
    """The larger of x and y, elementwise; nan if either is nan.

    The gradient goes to the larger operand; on a tie each gets half (as PyTorch).

    >>> maximum(Tensor([1, 5]), 3)
    Tensor([3.0, 5.0], op='maximum')
    """
    if _is_bool(x) and _is_bool(y):  # of two bools, a bool (their or), as NumPy
        return _binary(maximum, _as_any(x, "maximum"), _as_any(y, "maximum"), _MAXIMUM,
                       _NO_GRADIENT, bool_)
    return _binary(maximum, x, y, _MAXIMUM, _maximum_vjps)


_MAXIMUM = _RULES["maximum"] = _Elementwise("({0} if {0} > {1} or {0} != {0} else {1})",
                                            rows="_maximum_rows")
def _split_tie(g, x, y, loses):
    """The gradient for one operand of maximum or minimum: none where it loses, half on a
    tie (PyTorch's rule, where a nan loses to nothing)."""
    return where(loses, 0.0, where(equal(x, y), g / 2.0, g))


_maximum_vjps = (lambda g, out, x, y: _split_tie(g, x, y, x < y),
                 lambda g, out, x, y: _split_tie(g, x, y, y < x))


def minimum(x, y):
    """The smaller of x and y, elementwise; nan if either is nan. Ties split the gradient.

    >>> minimum(Tensor([1, 5]), 3)
    Tensor([1.0, 3.0], op='minimum')
    """
    if _is_bool(x) and _is_bool(y):  # of two bools, a bool (their and), as NumPy
        return _binary(minimum, _as_any(x, "minimum"), _as_any(y, "minimum"), _MINIMUM,
                       _NO_GRADIENT, bool_)
    return _binary(minimum, x, y, _MINIMUM, _minimum_vjps)


_MINIMUM = _RULES["minimum"] = _Elementwise("({0} if {0} < {1} or {0} != {0} else {1})",
                                            rows="_minimum_rows")
_minimum_vjps = (lambda g, out, x, y: _split_tie(g, x, y, x > y),
                 lambda g, out, x, y: _split_tie(g, x, y, y > x))


def _is_bool(x):
    """Whether x is a bool, a bool tensor, a bool array or nested lists of bools."""
    if isinstance(x, Tensor):
        return x.dtype is bool_
    return type(x) is bool or _is_bool_array(x) or isinstance(x, list) and _is_mask(x)


def _no_bool_minus(op, x):
    if _is_bool(x):
        raise TypeError(f"{op}: negating bools (-, or bool - bool) is refused, as in NumPy; "
                        f"use ~ or rax.logical_not for not, or x.astype('float64') first")


# ---- Comparisons and logic: bools, through which no gradient passes (their rules are None).

_NO_GRADIENT = (None, None)


def _compare(forward, x, y, rule):
    """The bool node of a comparison of x and y (of any dtypes: a bool compares as 0 or 1;
    complex numbers only for == and !=)."""
    op = forward.__name__
    x, y = _as_any(x, op), _as_any(y, op)
    if complex128 in (x.dtype, y.dtype) and op not in ("equal", "not_equal"):
        _no_complex(op, "comparing complex128 by " + op)
    return _binary(forward, x, y, rule, _NO_GRADIENT, bool_)


def less(x, y):
    """True where x < y (also the operator <).

    >>> Tensor([1, 2, 3]) < 2
    Tensor([True, False, False], op='less')
    """
    return _compare(less, x, y, _LESS)


_LESS = _RULES["less"] = _Elementwise("({0} < {1})", operator.lt)


def less_equal(x, y):
    """True where x <= y (also the operator <=)."""
    return _compare(less_equal, x, y, _LESS_EQUAL)


_LESS_EQUAL = _RULES["less_equal"] = _Elementwise("({0} <= {1})", operator.le)


def greater(x, y):
    """True where x > y (also the operator >)."""
    return _compare(greater, x, y, _GREATER)


_GREATER = _RULES["greater"] = _Elementwise("({0} > {1})", operator.gt)


def greater_equal(x, y):
    """True where x >= y (also the operator >=)."""
    return _compare(greater_equal, x, y, _GREATER_EQUAL)


_GREATER_EQUAL = _RULES["greater_equal"] = _Elementwise("({0} >= {1})", operator.ge)


def equal(x, y):
    """True where x == y (also the operator ==); nan equals nothing, -0.0 equals 0.0.

    >>> Tensor([1, 2, nan]) == Tensor([1, 3, nan])
    Tensor([True, False, False], op='equal')
    """
    return _compare(equal, x, y, _EQUAL)


_EQUAL = _RULES["equal"] = _Elementwise("({0} == {1})", operator.eq)


def not_equal(x, y):
    """True where x != y, nan included (also the operator !=)."""
    return _compare(not_equal, x, y, _NOT_EQUAL)


_NOT_EQUAL = _RULES["not_equal"] = _Elementwise("({0} != {1})", operator.ne)


def astype(x, dtype):
    """x with its elements as `dtype` ("float64", "bool" or "complex128", or NumPy's and
    Python's names for them), as NumPy's x.astype: a bool becomes 0.0 or 1.0; a number is
    True where it is nonzero (nan too). Only float64 to complex128 passes a gradient.

    >>> astype(Tensor([0.0, -2.0, nan]), "bool")
    Tensor([False, True, True], op='astype')
    """
    x, dtype = _as_any(x, "astype"), _as_dtype(dtype, "astype")
    if x.dtype is complex128 and dtype is float64:
        raise TypeError("astype: complex128 to float64 would drop the imaginary parts (NumPy "
                        "drops them with a ComplexWarning); say rax.real(x) or rax.abs(x)")
    return x if x.dtype is dtype else _astype(x, dtype)


def _astype(x, dtype):
    """x converted to another dtype (a node; see astype). Only float64 to complex128 passes
    a gradient: the real part of the complex cotangent (see chapter 5h)."""
    data = astype_lists(x.data, x.ndim, str(dtype))
    vjps = _real_part_vjps if x.dtype is float64 and dtype is complex128 else (None,)
    return _node("astype", _astype, data, x.shape, (x,), vjps, {"dtype": dtype}, dtype)


_real_part_vjps = (lambda g, out, x: real(g),)


_RULES["astype"] = _Kernel("astype_lists", lambda shapes, attrs, shape: (
    len(shape), str(attrs["dtype"])))


def _as_bools(x, op):
    """x as a bool tensor: bools pass, numbers are True where nonzero (as NumPy's logic)."""
    x = _as_any(x, op)
    return x if x.dtype is bool_ else _astype(x, bool_)


def logical_and(x, y):
    """True where both are true (nonzero), as numpy.logical_and; for bools also the operator &.

    >>> logical_and(Tensor([True, True, False]), Tensor([1.0, 0.0, 1.0]))
    Tensor([True, False, False], op='logical_and')
    """
    return _logical(logical_and, x, y, _LOGICAL_AND)


_LOGICAL_AND = _RULES["logical_and"] = _Elementwise("({0} & {1})", operator.and_)


def logical_or(x, y):
    """True where either is true (nonzero), as numpy.logical_or (the | of bools)."""
    return _logical(logical_or, x, y, _LOGICAL_OR)


_LOGICAL_OR = _RULES["logical_or"] = _Elementwise("({0} | {1})", operator.or_)


def logical_xor(x, y):
    """True where exactly one is true (nonzero), as numpy.logical_xor (the ^ of bools)."""
    return _logical(logical_xor, x, y, _LOGICAL_XOR)


_LOGICAL_XOR = _RULES["logical_xor"] = _Elementwise("({0} ^ {1})", operator.xor)


def _logical(forward, x, y, rule):
    op = forward.__name__
    return _binary(forward, _as_bools(x, op), _as_bools(y, op), rule, _NO_GRADIENT, bool_)


def logical_not(x):
    """True where x is false (zero), as numpy.logical_not; for bools also the operator ~.

    >>> ~Tensor([True, False])
    Tensor([False, True], op='logical_not')
    """
    x = _as_bools(x, "logical_not")
    return _node("logical_not", logical_not, _LOGICAL_NOT((x.data,), x.ndim), x.shape, (x,),
                 (None,), _NO_ATTRS, bool_)


_LOGICAL_NOT = _RULES["logical_not"] = _Elementwise("(not {0})", operator.not_)


def _bitwise(forward, symbol, x, y=None):
    """The operators ~, &, | and ^, which NumPy defines on bools (and integers), not floats:
    on bools they are the logical ops; on a float tensor, a TypeError."""
    operands = (x,) if y is None else (x, y)
    for v in operands:
        if not _is_bool(v):
            raise TypeError(f"{symbol} takes bools (a float tensor has no bits to combine, as "
                            f"in NumPy); got {_dtype_text(v)}: compare first (x > 0), or "
                            f"call rax.{forward.__name__}, which reads nonzero as true")
    return forward(*operands)


def _dtype_text(v):
    return f"a {v.dtype} tensor" if isinstance(v, Tensor) else f"{type(v).__name__} {v!r:.40}"


def where(condition, x, y):
    """x where condition is true (a bool, or a number that is nonzero), else y, the three
    broadcast together. Two bool branches give bools; a complex one gives complex128;
    otherwise the result is float64.

    x and y each get the gradient where they were chosen; the condition gets none.

    >>> where(Tensor([True, False]), Tensor([1, 2]), -1)
    Tensor([1.0, -1.0], op='where')
    """
    condition = _as_bools(condition, "where")
    x, y = _as_any(x, "where"), _as_any(y, "where")
    dtype = _joined_dtype((x, y))
    x, y = (t if t.dtype is dtype else _astype(t, dtype) for t in (x, y))
    tensors = (condition, x, y)
    shape = _check_size("where", _broadcast_shapes("where", *(t.shape for t in tensors)))
    condition, x, y = (_broadcast(t, shape) for t in tensors)
    data = _WHERE((condition.data, x.data, y.data), len(shape))
    return _node("where", where, data, shape, (condition, x, y), _where_vjps, _NO_ATTRS, dtype)


_WHERE = _RULES["where"] = _Elementwise("({1} if {0} else {2})", rows="_select_rows")
_where_vjps = (None,
               lambda g, out, condition, x, y: where(condition, g, 0.0),
               lambda g, out, condition, x, y: where(condition, 0.0, g))


# ---- 4c. Movement: reshape, transpose, indexing, concatenate -------------------------------

def reshape(x, shape, *more_sides):
    """The same elements, in row-major order, in a new shape; one side may be -1.
    The sides may also be given one by one: t.reshape(2, 3).

    d/dx: g reshaped back to x's shape.

    >>> reshape(arange(6), (2, -1))
    Tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], op='reshape')
    """
    x = _as_any(x, "reshape")
    shape = _resolve_shape(x, (shape,) + more_sides if more_sides else shape)
    if shape == x.shape:
        return x
    return _node("reshape", reshape, reshape_lists(x.data, x.shape, shape), shape, (x,),
                  _reshape_vjps, {"shape": shape}, x.dtype)


_RULES["reshape"] = _Kernel("reshape_lists", lambda shapes, attrs, shape: (shapes[0], shape))
_reshape_vjps = (lambda g, out, x: g.reshape(x.shape),)


def _resolve_shape(x, shape):
    """The new shape for x.reshape(shape), with one -1 filled in; checks the sizes agree."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"reshape: shape must be an int or a tuple of ints, "
                        f"got {shape!r}") from None
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"reshape: shape {shape} may have one -1 and no other negative side")
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape and known and x.size % known == 0:
        shape = tuple(x.size // known if n == -1 else n for n in shape)
    if -1 in shape or math.prod(shape) != x.size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                         f"(size {x.size}) into shape {shape}")
    return _as_shape("reshape", shape)


def transpose(x, axes=None, *more_axes):
    """The axes permuted: axis i of the result is axis axes[i] of x; None reverses them.
    The axes may also be given one by one: t.transpose(1, 0).

    d/dx: g with the axes permuted back.

    >>> transpose(Tensor([[1, 2, 3]]))
    Tensor([[1.0], [2.0], [3.0]], op='transpose')
    """
    x = _as_any(x, "transpose")
    if more_axes:
        axes = (axes,) + more_axes
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    if isinstance(axes, numbers.Integral):  # t.transpose(0) of a 1-D t, as NumPy
        axes = (axes,)
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"transpose: axes must be None or a tuple of ints, got {axes!r}")
    axes = tuple(_normalize_axis("transpose", a, x.ndim) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the axes of a "
                         f"tensor of shape {x.shape}")
    if axes == tuple(range(x.ndim)):
        return x
    shape = tuple(x.shape[a] for a in axes)
    return _node("transpose", transpose, transpose_lists(x.data, x.shape, axes), shape, (x,),
                  _transpose_vjps, {"axes": axes}, x.dtype)


_RULES["transpose"] = _Kernel("transpose_lists",
                              lambda shapes, attrs, shape: (shapes[0], attrs["axes"]))
# g goes back through the inverse permutation: axis i of x is axis axes.index(i) of out.
_transpose_vjps = (lambda g, out, x: g.transpose([out.attrs["axes"].index(i)
                                                  for i in range(x.ndim)]),)


def _no_dim(op, dim, dtype=None, out=None):
    """PyTorch's dim= is called axis= here, as in NumPy: a TypeError that says so, rather than
    Python's "unexpected keyword argument". NumPy's dtype= and out=, which numpy.sum(t) and
    the like pass to a tensor's method, are accepted as None (and dtype as float64): rax
    computes in float64, and a tensor is never written into."""
    if out is not None:
        raise TypeError(f"{op}: out= is not supported: rax tensors never change; use the "
                        f"result")
    if dtype is not None and not float64 == dtype:
        raise TypeError(f"{op}: dtype={dtype!r}: rax computes in float64")
    if dim is not None:
        raise TypeError(f"{op}: the axis is called axis= in rax, as in NumPy (dim= is "
                        f"PyTorch's name): write axis={dim!r}")


def _normalize_axis(op, axis, ndim):
    """axis as an int in [0, ndim): negative counts from the end."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{op}: an axis must be an int, got {axis!r} ({type(axis).__name__})")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise AxisError(f"{op}: axis {axis} is out of bounds for a tensor of dimension {ndim}")
    return axis % ndim


def _getitem(x, index):
    """x[index] for ints, slices (any step), ... and None, as NumPy's basic indexing.

    d/dx: g goes back to the places it was taken from, and zeros everywhere else.
    """
    if _has_mask(index):
        index = _masks_as_indices(x, index)
    kind = _is_advanced(index)
    if kind == "mixed":
        return _mixed_index(x, index)
    if kind:
        return _advanced_index(x, index)
    index, data_shape, shape = _normalize_index(index, x.shape)
    out = x
    if index:
        out = _node("getitem", _getitem, index_lists(x.data, index), data_shape, (x,),
                     _getitem_vjps, {"index": index}, x.dtype)
    return out.reshape(shape)  # a no-op unless None asked for new axes


_RULES["getitem"] = _Kernel("index_lists", lambda shapes, attrs, shape: (attrs["index"],))
_getitem_vjps = (lambda g, out, x: _scatter(g, out.attrs["index"], x.shape),)


def _normalize_index(key, shape):
    """Read an index as one int or slice per leading axis.

    Returns (index, data_shape, new_shape) for a tensor of `shape`: `index` has ints made
    non-negative and trailing full slices dropped; `data_shape` is the shape of x[index];
    `new_shape` adds the axes of size 1 that None asks for.
    """
    key = key if isinstance(key, tuple) else (key,)
    used = _sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > len(shape):
        raise IndexError(f"too many indices for tensor: tensor is {len(shape)}-dimensional, "
                         f"but {used} were indexed")
    if _sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    index, data_shape, new_shape, axis = [], [], [], 0
    for k in key:
        if k is None:
            new_shape.append(1)
        elif k is Ellipsis:
            skipped = len(shape) - used
            index += [slice(None)] * skipped
            data_shape += shape[axis:axis + skipped]
            new_shape += shape[axis:axis + skipped]
            axis += skipped
        elif isinstance(k, slice):
            side = len(range(shape[axis])[k])  # range() checks the slice and applies it
            index.append(k)
            data_shape.append(side)
            new_shape.append(side)
            axis += 1
        else:
            if isinstance(k, bool) or not (isinstance(k, numbers.Integral) or _has_tolist(
                    k) and getattr(k, "shape", None) == () and hasattr(k, "__index__")):
                raise TypeError(f"only integers, slices (:), ellipsis (...) and None are valid "
                                f"indices, got {k!r} ({type(k).__name__})")
            n, i = shape[axis], operator.index(k)  # an int, or a 0-d integer array
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            index.append(i % n)
            axis += 1
    data_shape += shape[axis:]
    new_shape += shape[axis:]
    while index and index[-1] == slice(None):
        index.pop()
    return tuple(index), tuple(data_shape), tuple(new_shape)


def _scatter(g, index, shape):
    """Zeros of `shape` with g written at [index]: the adjoint of indexing, and vice versa."""
    kernel = complex_scatter_lists if g.dtype is complex128 else scatter_lists  # 0j around
    return _node("scatter", _scatter, kernel(g.data, index, shape), shape, (g,),
                 _scatter_vjps, {"index": index, "shape": shape}, g.dtype)


_RULES["scatter"] = _Kernel("scatter_lists", lambda shapes, attrs, shape: (
    attrs["index"], shape), on_complex=_Kernel("complex_scatter_lists", lambda shapes, attrs,
                                               shape: (attrs["index"], shape)))
_scatter_vjps = (lambda g, out, x: _getitem(g, out.attrs["index"]),)


def concatenate(tensors, axis=0, *, dim=None):
    """Join tensors of equal shape except along `axis`.

    d/dx for each input is its own slice of g.

    >>> concatenate([Tensor([[1, 2]]), Tensor([[3, 4]])], axis=1)
    Tensor([[1.0, 2.0, 3.0, 4.0]], op='concatenate')
    """
    _no_dim("concatenate", dim)
    _one_list("concatenate", axis)
    tensors = _one_dtype(tuple(_as_any(t, "concatenate")
                               for t in _as_sequence("concatenate", tensors)))
    if not tensors:
        raise ValueError("concatenate: need at least one tensor")
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("concatenate: 0-d tensors cannot be concatenated; use rax.stack")
    axis = _normalize_axis("concatenate", axis, first.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or t.shape[:axis] + t.shape[axis + 1:] != (
                first.shape[:axis] + first.shape[axis + 1:]):
            raise ValueError(f"concatenate: tensor {i} has shape {t.shape}, but tensor 0 has "
                             f"shape {first.shape}; all sides but axis {axis} must match")
    offsets = list(itertools.accumulate((t.shape[axis] for t in tensors), initial=0))
    shape = first.shape[:axis] + (offsets[-1],) + first.shape[axis + 1:]
    vjps = tuple(_slice_rule(axis, start, stop) for start, stop in zip(offsets, offsets[1:]))
    data = concatenate_lists([t.data for t in tensors], axis)
    return _node("concatenate", _concatenate, data, shape, tensors, vjps, {"axis": axis},
                 first.dtype)


_RULES["concatenate"] = _Kernel("concatenate_lists", lambda shapes, attrs, shape: (attrs["axis"],),
                                listed=True)


def _concatenate(*tensors, axis):
    """concatenate, called as node.forward(*node.inputs, **node.attrs) is."""
    return concatenate(tensors, axis)


def _slice_rule(axis, start, stop):
    """The vjp rule of one input of concatenate: its own slice of g along `axis`."""
    key = (slice(None),) * axis + (slice(start, stop),)
    return lambda g, out, *inputs: g[key]


def _one_list(op, axis):
    """concatenate(x, y) for concatenate([x, y]): say where the tensors go."""
    if isinstance(axis, (Tensor, list, tuple)) or _has_tolist(axis):
        raise TypeError(f"{op}: axis is a {type(axis).__name__}: the tensors go in one list, "
                        f"{op}([x, y], axis)")


def _one_dtype(tensors):
    """The tensors in one dtype: bool if all are bools, else complex128 if any is complex,
    else all float64 (as NumPy joins)."""
    dtype = _joined_dtype(tensors)
    return tuple(t if t.dtype is dtype else _astype(t, dtype) for t in tensors)


def _joined_dtype(tensors):
    """The dtype that tensors of these dtypes join in (NumPy's promotion, bool < float64 <
    complex128)."""
    dtypes = {t.dtype for t in tensors}
    return complex128 if complex128 in dtypes else bool_ if dtypes == {bool_} else float64


def _as_sequence(op, tensors):
    """The tensors that concatenate and stack join, from any iterable (a tensor gives its rows,
    as in NumPy)."""
    try:
        return tuple(tensors)
    except TypeError:
        raise TypeError(f"{op}: expected a sequence of tensors, got {tensors!r}") from None


# ---- 4e. Indexing by integers: take, take_along_axis, x[indices], x[mask] ------------------

def take(x, indices, axis=None):
    """The elements of x at the integer `indices` along `axis` (None: of x flattened), as
    numpy.take: shape x.shape[:axis] + indices.shape + x.shape[axis + 1:]. A negative index
    counts from the end; one out of range is an IndexError. The indices get no gradient.

    d/dx: g added back at the places it was taken from (a repeated index adds up).

    >>> take(Tensor([[1, 2], [3, 4]]), [1, 1, 0], axis=0).tolist()
    [[3.0, 4.0], [3.0, 4.0], [1.0, 2.0]]
    """
    x, indices = _as_any(x, "take"), _as_tensor(indices, "take")
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = _normalize_axis("take", axis, x.ndim)
    shape = _check_size("take", x.shape[:axis] + indices.shape + x.shape[axis + 1:])
    data = take_lists(x.data, indices.data, x.shape, indices.shape, axis)
    return _node("take", _take, data, shape, (x, indices), _take_vjps, {"axis": axis},
                 x.dtype)


def _take(x, indices, axis):
    """take, called as node.forward(*node.inputs, **node.attrs) is."""
    return take(x, indices, axis)


_RULES["take"] = _Kernel("take_lists", lambda shapes, attrs, shape: (
    shapes[0], shapes[1], attrs["axis"]))
_take_vjps = (lambda g, out, x, indices: _take_backward(g, indices, x.shape, out.attrs["axis"]),
              None)


def _take_backward(g, indices, shape, axis):
    """Zeros of `shape` with g added at the places take read (its vjp, linear in g)."""
    kernel = complex_take_backward_lists if g.dtype is complex128 else take_backward_lists
    data = kernel(g.data, indices.data, indices.shape, shape, axis)
    return _node("take_backward", _take_backward, data, shape, (g, indices),
                 _take_backward_vjps, {"shape": shape, "axis": axis}, g.dtype)


_RULES["take_backward"] = _Kernel("take_backward_lists", lambda shapes, attrs, shape: (
    shapes[1], attrs["shape"], attrs["axis"]), on_complex=_Kernel(
    "complex_take_backward_lists", lambda shapes, attrs, shape: (
        shapes[1], attrs["shape"], attrs["axis"])))
_take_backward_vjps = (lambda g, out, g0, indices: take(g, indices, out.attrs["axis"]), None)


def take_along_axis(x, indices, axis):
    """x[..., indices[..., i, ...], ...] along `axis`, as numpy.take_along_axis: indices
    has x's number of axes and x's sides except along `axis`. The indices get no gradient.

    >>> take_along_axis(Tensor([[1, 2], [3, 4]]), Tensor([[1], [0]]), axis=1).tolist()
    [[2.0], [3.0]]
    """
    x, indices = _as_any(x, "take_along_axis"), _as_tensor(indices, "take_along_axis")
    axis = _normalize_axis("take_along_axis", axis, x.ndim)
    if indices.ndim != x.ndim or any(
            a != b for i, (a, b) in enumerate(zip(indices.shape, x.shape)) if i != axis):
        raise ValueError(f"take_along_axis: indices of shape {indices.shape} must have the "
                         f"sides of x's shape {x.shape} except along axis {axis}")
    # The flat positions along axis 0 of x flattened, computed with ops on the indices:
    # position = (i * n + index) * inner + k, over the outer i and inner k of `axis`.
    n, inner = x.shape[axis], math.prod(x.shape[axis + 1:])
    checked = _checked_indices(indices, n)
    outer = arange(math.prod(x.shape[:axis])).reshape(x.shape[:axis] + (1,) * (x.ndim - axis))
    within = arange(inner).reshape(x.shape[axis + 1:]) if inner else zeros(x.shape[axis + 1:])
    positions = (outer * float(n) + checked) * float(inner) + within
    return take(x.reshape(-1), positions, 0)


def argsort(x, axis=-1, kind=None, order=None):
    """The indices that sort x along `axis` (None: of x flattened), as floats: ascending,
    ties in their order, nan last (numpy.argsort with kind="stable"; a 0-d x is read as
    one element, as NumPy does). No gradient flows through it. kind is accepted for NumPy's
    sake: the order is always the stable one, which is a right answer for every kind; order
    (of structured arrays) must be None.

    >>> argsort(Tensor([3, 1, 2])).tolist()
    [1.0, 2.0, 0.0]
    """
    x = _as_tensor(x, "argsort")
    _sort_options("argsort", kind, order)
    if axis is None or x.ndim == 0:
        x, axis = x.reshape(-1), 0
    axis = _normalize_axis("argsort", axis, x.ndim)
    return _node("argsort", argsort, argsort_lists(x.data, x.shape, axis), x.shape, (x,),
                 (None,), {"axis": axis})


_RULES["argsort"] = _Kernel("argsort_lists", lambda shapes, attrs, shape: (shapes[0],
                                                                           attrs["axis"]))


def sort(x, axis=-1, kind=None, order=None):
    """x sorted along `axis` (None: x flattened), ascending, nan last (as numpy.sort); the
    gradient follows the permutation: each element's goes back to where it came from.

    >>> sort(Tensor([3, nan, 1])).tolist()
    [1.0, 3.0, nan]
    """
    x = _as_any(x, "sort")  # sorted bools are bools (False first)
    if x.dtype is complex128:
        _no_complex("sort")
    _sort_options("sort", kind, order)
    if axis is None:
        x, axis = x.reshape(-1), 0
    return take_along_axis(x, argsort(x, _normalize_axis("sort", axis, x.ndim)), axis)


def _sort_options(op, kind, order):
    """NumPy's kind (any of its names: rax's sort is stable, right for every kind) and order
    (None: rax has no structured arrays)."""
    if kind not in (None, "quicksort", "mergesort", "heapsort", "stable"):
        raise ValueError(f"{op}: kind must be one of NumPy's, got {kind!r}")
    if order is not None:
        raise TypeError(f"{op}: order= is for NumPy's structured arrays, which rax has not")


def _checked_indices(indices, n):
    """Integer indices along a side of n, negatives counted from the end; one that is not an
    integer in [-n, n) is an IndexError (in programs too). No gradient flows."""
    data = checked_indices_lists(indices.data, indices.shape, n)
    return _node("checked_indices", _checked_indices, data, indices.shape, (indices,), (None,),
                 {"n": n})


_RULES["checked_indices"] = _Kernel("checked_indices_lists",
                                    lambda shapes, attrs, shape: (shapes[0], attrs["n"]))


def _advanced_index(x, key):
    """x[key] for a key of integer arrays (a list, a Tensor or an array of ints), one for each
    leading axis (x[rows, cols]), broadcast together; or a boolean mask of x's shape (a
    nested list or array of bools), which picks the elements where it is true, in order."""
    arrays = key if isinstance(key, tuple) else (key,)
    if len(arrays) > x.ndim:
        raise IndexError(f"too many indices for tensor: tensor is {x.ndim}-dimensional, but "
                         f"{len(arrays)} were indexed")
    tensors = [_as_tensor(a, "x[indices]") for a in arrays]
    try:
        shape = _broadcast_shapes("x[indices]", *(t.shape for t in tensors))
    except ValueError as error:  # NumPy's kind of error, for an index
        raise IndexError(str(error)) from None
    position = None
    for t, n in zip(tensors, x.shape):
        checked = _broadcast(_checked_indices(t, n), shape)
        position = checked if position is None else position * float(n) + checked
    k = len(tensors)
    flat = x.reshape((math.prod(x.shape[:k]),) + x.shape[k:])
    return take(flat, position, 0)


def _is_array_index(k):
    return isinstance(k, (list, Tensor)) or _has_tolist(k) and getattr(k, "ndim", 0) > 0


def _is_advanced(key):
    """Whether an index asks for integer or boolean indexing: a list, a Tensor or an array,
    alone or in a tuple of them (True), or mixed with ints, slices, ... or None ("mixed")."""
    if isinstance(key, tuple):
        kinds = [_is_array_index(k) for k in key]
        if any(kinds) and not all(kinds):
            return "mixed"
        return bool(kinds) and all(kinds)
    return _is_array_index(key)


def _mixed_index(x, key):
    """x[key] for integer arrays mixed with ints, slices, ... and None, as NumPy: the arrays
    and ints (the advanced indices) broadcast together, and the rest is basic indexing, done
    first. The broadcast axes stand where the first advanced index stood if the advanced
    indices are next to each other, else in front (NumPy's rule)."""
    used = _sum(1 for k in key if k is not None and k is not Ellipsis)
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]  # `is`: == of a tensor is a tensor
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        key = key[:at] + (slice(None),) * _max(x.ndim - used, 0) + key[at + 1:]
    advanced = [i for i, k in enumerate(key) if _is_array_index(k) or (
        isinstance(k, numbers.Integral) and not isinstance(k, bool))]
    y = _getitem(x, tuple(slice(None) if i in advanced else k for i, k in enumerate(key)))
    axis_of = {}  # where each advanced index's axis is in y
    for i, k in enumerate(key):
        if i in advanced:
            axis_of[i] = len(axis_of) + _sum(1 for j in range(i) if j not in advanced and (
                key[j] is None or isinstance(key[j], slice)))
    moved = [axis_of[i] for i in advanced]
    rest = [a for a in range(y.ndim) if a not in moved]
    out = _advanced_index(_arranged(y, moved + rest), tuple(key[i] for i in advanced))
    if advanced == list(range(advanced[0], advanced[-1] + 1)) and moved[0] > 0:
        width = out.ndim - len(rest)  # the broadcast axes, now in front
        out = moveaxis(out, tuple(range(width)), tuple(range(moved[0], moved[0] + width)))
    return out


def _is_mask(obj):
    """Whether an index is a boolean mask: a bool tensor, an array of bools (NumPy's, torch's),
    or nested lists of Python bools only. A float tensor is always integer positions."""
    if isinstance(obj, Tensor):
        return obj.dtype is bool_
    if _is_bool_array(obj):
        return True
    if not isinstance(obj, list):
        return False
    probe = obj
    while isinstance(probe, (list, tuple)) and probe:
        probe = probe[0]
    return (type(probe) is bool or _is_bool_array(probe)) and \
        _to_lists(obj, "x[mask]")[2] is bool_


def _has_mask(key):
    return any(map(_is_mask, key)) if isinstance(key, tuple) else _is_mask(key)


def _masks_as_indices(x, key):
    """The index `key` with each boolean mask replaced by its nonzero() integer arrays, one
    per axis it covers, as NumPy reads a mask: a mask of k axes covers the next k axes of x,
    whose sides it must have. The mask's values decide the result's shape, so a mask
    computed from a traced function's arguments is a TraceError that names rax.where."""
    key = key if isinstance(key, tuple) else (key,)
    used = _sum(_as_any(k, "x[mask]").ndim if _is_mask(k) else 1
                for k in key if k is not None and k is not Ellipsis)
    out, axis = [], 0
    for k in key:
        if k is Ellipsis:
            axis += _max(x.ndim - used, 0)
        elif _is_mask(k):
            mask = _as_any(k, "x[mask]")
            covered = x.shape[axis:axis + mask.ndim]
            if mask.ndim == 0:
                raise IndexError("a 0-d boolean index is not supported; write x[None] (or "
                                 "rax.where) instead")
            if mask.shape != covered:
                raise IndexError(f"boolean index of shape {mask.shape} does not match the "
                                 f"indexed tensor of shape {x.shape} at axes {axis} to "
                                 f"{axis + mask.ndim - 1} (sides {covered})")
            _check_readable(mask, "x[mask] (the result's shape depends on the mask's values)")
            out += nonzero(mask)
            axis += mask.ndim
            continue
        elif k is not None:
            axis += 1
        out.append(k)
    return tuple(out)


# ---- 4d. Reductions: max and min -----------------------------------------------------------

def max(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The largest element over `axis`; nan if any is nan.

    d/dx = 1 at the largest element; tied largest elements share it equally (torch.amax).

    >>> max(Tensor([[1, 5], [7, 2]]), axis=1)
    Tensor([5.0, 7.0], op='max')
    """
    _no_dim("max", dim, dtype, out)
    return _extremum(max, x, axis, keepdims, _max_of)


def min(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The smallest element over `axis`; nan if any is nan.

    d/dx = 1 at the smallest element; tied smallest elements share it equally (torch.amin).

    >>> min(Tensor([[1, 5], [7, 2]]))
    Tensor(1.0, op='min')
    """
    _no_dim("min", dim, dtype, out)
    return _extremum(min, x, axis, keepdims, _min_of)


def _extremum(forward, x, axis, keepdims, fn):
    """max or min over `axis`; there must be something to choose from."""
    op = forward.__name__
    x = _as_any(x, op)  # the largest of bools is a bool (any), as in NumPy
    if x.dtype is complex128:
        _no_complex(op)
    for a in _normalize_axes(op, axis, x.ndim):
        if x.shape[a] == 0:
            raise ValueError(f"{op}: cannot reduce over axis {a}, which has size 0 "
                             f"(shape {x.shape})")
    return _reduce(forward, x, axis, keepdims, fn, _extremum_vjps, x.dtype)


def _extremum_vjp(g, out, x):
    """g split equally among the elements equal to the result. As torch.amax, it is
    (g / count) * mask, so a nan result spreads nan."""
    kept = _kept_shape(x.shape, out.attrs["axis"])
    winners = equal(x, out.reshape(kept))
    return g.reshape(kept) / winners.sum(out.attrs["axis"], keepdims=True) * winners


def prod(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The product over `axis` (None: all axes), multiplied in order (1.0 for none).

    d/dx_i = the product of the others, right where x holds zeros too (as PyTorch): with
    no zero in the group it is out / x_i; with one, it is nonzero only at that zero.
    Second derivatives are PyTorch's too, except in a group with two zeros or more.

    >>> prod(Tensor([[1, 2], [3, 4]]), axis=1).tolist()
    [2.0, 12.0]
    """
    _no_dim("prod", dim, dtype, out)
    x = _as_num(x, "prod")
    if x.dtype is complex128:
        return _reduce(prod, x, axis, keepdims, _cprod_of, _prod_vjps, complex128)
    return _reduce(prod, x, axis, keepdims, _prod_of, _prod_vjps)


def _prod_vjp(g, out, x):
    axes = out.attrs["axis"]
    kept = _kept_shape(x.shape, axes)
    zero = equal(x, 0.0)
    nonzero = where(zero, 1.0, x)  # x with its zeros as ones: no division by zero below
    others = nonzero.prod(axes, keepdims=True)  # the product of the nonzero elements
    zeros = zero.sum(axes, keepdims=True)
    at_zero = where(equal(zeros, 1.0), others, 0.0)
    # Where the group holds one zero, the others' product is 0: written as a product with
    # that zero (its value, kept as a tensor), so that a second derivative sees it.
    the_zero = where(zero, x, 0.0).sum(axes, keepdims=True)
    elsewhere = where(equal(zeros, 0.0), others / nonzero,
                      where(equal(zeros, 1.0), others / nonzero * the_zero, 0.0))
    return g.reshape(kept) * where(zero, at_zero, elsewhere)


_RULES["prod"] = _reduction("_prod_of", "_cprod_of")
_prod_vjps = (_prod_vjp,)


def argmax(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The index of the largest element along `axis` (None: in the flattened tensor), as a
    float: the first of tied ones, and the first nan if there is one (as NumPy). No
    gradient flows through it.

    >>> argmax(Tensor([[1, 5, 5], [7, 0, 2]]), axis=1).tolist()
    [1.0, 0.0]
    """
    _no_dim("argmax", dim, dtype, out)
    return _argextremum(argmax, x, axis, keepdims)


def argmin(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The index of the smallest element along `axis`, as argmax does for the largest.

    >>> argmin(Tensor([[1, 5, 5], [7, 0, 2]])).item()
    4.0
    """
    _no_dim("argmin", dim, dtype, out)
    return _argextremum(argmin, x, axis, keepdims)


def _argextremum(forward, x, axis, keepdims):
    op = forward.__name__
    x = _as_tensor(x, op)
    if axis is not None:
        axis = _normalize_axis(op, axis, x.ndim)
    axes = tuple(range(x.ndim)) if axis is None else (axis,)
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise ValueError(f"{op}: axis {empty[0]} of shape {x.shape} is empty: it has no "
                         f"{op[3:]}")
    shape = _kept_shape(x.shape, axes) if keepdims else tuple(
        n for i, n in enumerate(x.shape) if i not in axes)
    fn = _argmax_of if op == "argmax" else _argmin_of
    return _node(op, forward, reduce_lists(x.data, x.shape, axes, fn, shape), shape, (x,),
                 (None,), {"axis": axis, "keepdims": keepdims})


def _argextremum_rule(fn):
    return _Kernel("reduce_lists", lambda shapes, attrs, shape: (
        shapes[0], tuple(range(len(shapes[0]))) if attrs["axis"] is None else (attrs["axis"],),
        _Name(fn), shape))


_RULES["argmax"] = _argextremum_rule("_argmax_of")
_RULES["argmin"] = _argextremum_rule("_argmin_of")
_RULES["max"] = _reduction("_max_of")
_RULES["min"] = _reduction("_min_of")
_extremum_vjps = (_extremum_vjp,)


# ---- 4f. NumPy's elementwise math ----------------------------------------------------------
#
# The rest of numpy's real functions, each as exp: C's function (the math module's), an
# IEEE-safe twin (appendix B) where C raises (tan(inf), atanh(1), sinh(1000)), and vjp rules
# placed as PyTorch's, so that their infs and nans at the domain edges are PyTorch's too.

def tan(x):
    """The tangent.   d/dx tan(x) = 1 + tan(x)**2

    >>> tan(Tensor([0.0, inf])).tolist()
    [0.0, nan]
    """
    return _unary(tan, x, _TAN, _tan_vjps)


_TAN = _RULES["tan"] = _Elementwise("tan({0})", math.tan, safe="_tan",
                                    on_complex=("_ctan({0})", "_ctan"))
_tan_vjps = (lambda g, out, x: g * (1.0 + out * out),)


def sinh(x):
    """The hyperbolic sine.   d/dx sinh(x) = cosh(x)

    >>> sinh(Tensor([0.0, -1000.0])).tolist()
    [0.0, -inf]
    """
    return _unary(sinh, x, _SINH, _sinh_vjps)


_SINH = _RULES["sinh"] = _Elementwise("sinh({0})", math.sinh, safe="_sinh",
                                      on_complex=("_csinh({0})", cmath.sinh, "_csinh"))
_sinh_vjps = (lambda g, out, x: g * cosh(x),)


def cosh(x):
    """The hyperbolic cosine.   d/dx cosh(x) = sinh(x)

    >>> cosh(Tensor([0.0, -1000.0])).tolist()
    [1.0, inf]
    """
    return _unary(cosh, x, _COSH, _cosh_vjps)


_COSH = _RULES["cosh"] = _Elementwise("cosh({0})", math.cosh, safe="_cosh",
                                      on_complex=("_ccosh({0})", cmath.cosh, "_ccosh"))
_cosh_vjps = (lambda g, out, x: g * sinh(x),)


def arcsin(x):
    """The inverse sine, in [-pi/2, pi/2]; nan outside [-1, 1].
    d/dx arcsin(x) = 1 / sqrt(1 - x**2)   (inf at x = +-1)

    >>> arcsin(Tensor([1.0, 2.0])).tolist()
    [1.5707963267948966, nan]
    """
    return _unary(arcsin, x, _ARCSIN, _arcsin_vjps)


_ARCSIN = _RULES["arcsin"] = _Elementwise("asin({0})", math.asin, safe="_asin",
                                          on_complex=("_casin({0})", cmath.asin))
_arcsin_vjps = (lambda g, out, x: g / sqrt(1.0 - x * x),)


def arccos(x):
    """The inverse cosine, in [0, pi]; nan outside [-1, 1].
    d/dx arccos(x) = -1 / sqrt(1 - x**2)

    >>> arccos(Tensor([1.0, 2.0])).tolist()
    [0.0, nan]
    """
    return _unary(arccos, x, _ARCCOS, _arccos_vjps)


_ARCCOS = _RULES["arccos"] = _Elementwise("acos({0})", math.acos, safe="_acos",
                                          on_complex=("_cacos({0})", cmath.acos))
_arccos_vjps = (lambda g, out, x: -g / sqrt(1.0 - x * x),)


def arctan(x):
    """The inverse tangent, in [-pi/2, pi/2].   d/dx arctan(x) = 1 / (1 + x**2)

    >>> arctan(Tensor([0.0, inf])).tolist()
    [0.0, 1.5707963267948966]
    """
    return _unary(arctan, x, _ARCTAN, _arctan_vjps)


_ARCTAN = _RULES["arctan"] = _Elementwise("atan({0})", math.atan,
                                          on_complex=(
                                              "_catan({0})", cmath.atan, "_catan"))
_arctan_vjps = (lambda g, out, x: g / (1.0 + x * x),)


def arcsinh(x):
    """The inverse hyperbolic sine.   d/dx arcsinh(x) = 1 / sqrt(x**2 + 1)

    >>> arcsinh(Tensor([0.0, -inf])).tolist()
    [0.0, -inf]
    """
    return _unary(arcsinh, x, _ARCSINH, _arcsinh_vjps)


_ARCSINH = _RULES["arcsinh"] = _Elementwise("asinh({0})", math.asinh,
                                            on_complex=("_casinh({0})", cmath.asinh))
_arcsinh_vjps = (lambda g, out, x: g / sqrt(x * x + 1.0),)


def arccosh(x):
    """The inverse hyperbolic cosine, for x >= 1 (nan below).
    d/dx arccosh(x) = 1 / sqrt(x**2 - 1)   (inf at x = 1)

    >>> arccosh(Tensor([1.0, 0.0])).tolist()
    [0.0, nan]
    """
    return _unary(arccosh, x, _ARCCOSH, _arccosh_vjps)


_ARCCOSH = _RULES["arccosh"] = _Elementwise("acosh({0})", math.acosh, safe="_acosh",
                                            on_complex=("_cacosh({0})", "_cacosh"))
_arccosh_vjps = (lambda g, out, x: g / sqrt(x * x - 1.0),)


def arctanh(x):
    """The inverse hyperbolic tangent: +-inf at x = +-1, nan beyond.
    d/dx arctanh(x) = 1 / (1 - x**2)

    >>> arctanh(Tensor([1.0, 2.0])).tolist()
    [inf, nan]
    """
    return _unary(arctanh, x, _ARCTANH, _arctanh_vjps)


_ARCTANH = _RULES["arctanh"] = _Elementwise("atanh({0})", math.atanh, safe="_atanh",
                                            on_complex=(
                                                "_catanh({0})", cmath.atanh, "_catanh"))
_arctanh_vjps = (lambda g, out, x: g / (1.0 - x * x),)


def log1p(x):
    """log(1 + x), exact for tiny x: -inf at x = -1, nan below.   d/dx = 1 / (1 + x)

    >>> log1p(Tensor([1e-20, -1.0])).tolist()
    [1e-20, -inf]
    """
    return _unary(log1p, x, _LOG1P, _log1p_vjps)


_LOG1P = _RULES["log1p"] = _Elementwise("log1p({0})", math.log1p, safe="_log1p",
                                        on_complex=("_clog1p({0})", "_clog1p"))
_log1p_vjps = (lambda g, out, x: g / (x + 1.0),)


def expm1(x):
    """exp(x) - 1, exact for tiny x.   d/dx expm1(x) = exp(x) = expm1(x) + 1

    >>> expm1(Tensor([1e-20, 1000.0])).tolist()
    [1e-20, inf]
    """
    return _unary(expm1, x, _EXPM1, _expm1_vjps)


_EXPM1 = _RULES["expm1"] = _Elementwise("expm1({0})", math.expm1, safe="_expm1",
                                        on_complex=("_cexpm1({0})", "_cexpm1"))
_expm1_vjps = (lambda g, out, x: g * (out + 1.0),)


def log2(x):
    """The base-2 logarithm.   d/dx log2(x) = 1 / (x log(2))

    >>> log2(Tensor([8.0, 0.0, -1.0])).tolist()
    [3.0, -inf, nan]
    """
    return _unary(log2, x, _LOG2, _log2_vjps)


_LOG2 = _RULES["log2"] = _Elementwise("log2({0})", math.log2, safe="_log2",
                                      on_complex=("_clog2({0})", "_clog2"))
_log2_vjps = (lambda g, out, x: g / (x * math.log(2.0)),)


def log10(x):
    """The base-10 logarithm.   d/dx log10(x) = 1 / (x log(10))

    >>> log10(Tensor([1000.0, 0.0])).tolist()
    [3.0, -inf]
    """
    return _unary(log10, x, _LOG10, _log10_vjps)


_LOG10 = _RULES["log10"] = _Elementwise("log10({0})", math.log10, safe="_log10",
                                        on_complex=(
                                            "_clog10({0})", cmath.log10, "_clog10"))
_log10_vjps = (lambda g, out, x: g / (x * math.log(10.0)),)


def exp2(x):
    """2 ** x.   d/dx exp2(x) = 2**x log(2)

    >>> exp2(Tensor([3.0, 2000.0])).tolist()
    [8.0, inf]
    """
    return _unary(exp2, x, _EXP2, _exp2_vjps)


_EXP2 = _RULES["exp2"] = _Elementwise("2.0 ** {0}", functools.partial(operator.pow, 2.0),
                                      safe="_exp2", on_complex=("_cexp2({0})", "_cexp2"))
_exp2_vjps = (lambda g, out, x: g * (out * math.log(2.0)),)


def arctan2(y, x):
    """The angle of the point (x, y), in [-pi, pi], signs of zeros included, as numpy.
    d/dy = x / (x**2 + y**2), d/dx = -y / (x**2 + y**2)   (0 at the origin, as PyTorch)

    >>> arctan2(Tensor([1.0, 0.0]), Tensor([0.0, -1.0])).tolist()
    [1.5707963267948966, 3.141592653589793]
    """
    return _binary(arctan2, y, x, _ARCTAN2, _arctan2_vjps)


_ARCTAN2 = _RULES["arctan2"] = _Elementwise("atan2({0}, {1})", math.atan2)
_arctan2_vjps = (lambda g, out, y, x: g * x * _inverse_square_radius(y, x),
                 lambda g, out, y, x: g * -y * _inverse_square_radius(y, x))


def _inverse_square_radius(y, x):
    """1 / (x**2 + y**2), with 0 where that is inf (at the origin, or where the squares
    underflow): as PyTorch, whose arctan2 gradient there is 0, not nan."""
    r = reciprocal(y * y + x * x)
    return where(equal(r, inf), 0.0, r)


def hypot(x, y):
    """sqrt(x**2 + y**2), without overflow in the squares (inf if either is inf, even with
    a nan).   d/dx = x / hypot(x, y), d/dy = y / hypot(x, y)   (nan at 0, 0, as PyTorch)

    >>> hypot(Tensor([3.0, inf]), Tensor([4.0, nan])).tolist()
    [5.0, inf]
    """
    return _binary(hypot, x, y, _HYPOT, _hypot_vjps)


_HYPOT = _RULES["hypot"] = _Elementwise("hypot({0}, {1})", math.hypot, safe="_hypot")
_hypot_vjps = (lambda g, out, x, y: g * x / out,
               lambda g, out, x, y: g * y / out)


def logaddexp(x, y):
    """log(exp(x) + exp(y)), without overflow (as numpy: x + log(2) where x == y, which
    keeps logaddexp(inf, inf) = inf).
    d/dx = 1 / (1 + exp(y - x)), d/dy = 1 / (1 + exp(x - y))

    >>> logaddexp(Tensor([1000.0, -inf]), Tensor([1000.0, 0.0])).tolist()
    [1000.6931471805599, 0.0]
    """
    return _binary(logaddexp, x, y, _LOGADDEXP, _logaddexp_vjps)


_LOGADDEXP = _RULES["logaddexp"] = _Elementwise("_logaddexp({0}, {1})", "_logaddexp")
_logaddexp_vjps = (lambda g, out, x, y: g / (1.0 + exp(y - x)),
                   lambda g, out, x, y: g / (1.0 + exp(x - y)))

__all__ += ["tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arctan2", "arcsinh", "arccosh",
            "arctanh", "log1p", "expm1", "log2", "log10", "exp2", "hypot", "logaddexp"]


# ============================================================================================
# 5. Composite ops (and a few primitives)
#
# Built from the primitives, so their gradients come for free. A few are primitives with
# rules of their own: sigmoid, for numerical stability, logsumexp, so that its gradient is
# PyTorch's, and rax.linalg's (5f), whose kernels are whole algorithms.
# ============================================================================================

def square(x):
    """x ** 2.   d/dx = 2x (computed as pow(x, 2), as torch.square does)

    >>> square(Tensor([-3, 2]))
    Tensor([9.0, 4.0], op='pow_scalar')
    """
    return _as_num(x, "square") ** 2.0


def reciprocal(x):
    """1 / x.   d/dx = -1 / x**2

    >>> reciprocal(Tensor([2, 0]))
    Tensor([0.5, inf], op='div')
    """
    return div(1.0, x)


def sigmoid(x):
    """1 / (1 + exp(-x)).   d/dx sigmoid(x) = sigmoid(x) (1 - sigmoid(x))

    A fused rule: differentiating the formula above gives inf/inf = nan for x < -709.

    >>> sigmoid(Tensor([0, -1000]))
    Tensor([0.5, 0.0], op='sigmoid')
    """
    return _unary(sigmoid, x, _SIGMOID, _sigmoid_vjps)


_SIGMOID = _RULES["sigmoid"] = _Elementwise("_sigmoid({0})", "_sigmoid")
_sigmoid_vjps = (lambda g, out, x: g * (1.0 - out) * out,)


def mean(x, axis=None, keepdims=False, *, dim=None, dtype=None, out=None):
    """The sum over `axis` divided by n, the number of elements summed (nan for none).

    d/dx = 1/n for every element.

    >>> mean(Tensor([[1, 2], [3, 4]]), axis=1)
    Tensor([1.5, 3.5], op='div')
    """
    _no_dim("mean", dim, dtype, out)
    x = _as_num(x, "mean")
    count = math.prod(x.shape[a] for a in _normalize_axes("mean", axis, x.ndim))
    return x.sum(axis, keepdims) / float(count)


def logsumexp(x, axis=None, keepdims=False, *, dim=None):
    """log(sum(exp(x))) over `axis`, computed without overflow.   d/dx = exp(x - out)

    As PyTorch: -inf when every term is -inf (or there are none), inf when a term is inf.
    It has a rule of its own so that its gradient is PyTorch's, exp(x - out), even where
    rounding makes that differ from the gradient of the formula (at 1e16, say).

    >>> logsumexp(Tensor([1000, 1000]))
    Tensor(1000.6931471805599, op='logsumexp')
    """
    _no_dim("logsumexp", dim)
    x = _as_tensor(x, "logsumexp")
    axes = _normalize_axes("logsumexp", axis, x.ndim)
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape) if keepdims or i not in axes)
    return _node("logsumexp", logsumexp, logsumexp_lists(x.data, x.shape, axes, shape), shape,
                 (x,), _logsumexp_vjps, {"axis": axes, "keepdims": keepdims})


_RULES["logsumexp"] = _Kernel("logsumexp_lists",
                              lambda shapes, attrs, shape: (shapes[0], attrs["axis"], shape))


def _logsumexp_vjp(g, out, x):
    kept = _kept_shape(x.shape, out.attrs["axis"])
    return g.reshape(kept) * exp(x - out.reshape(kept))


_logsumexp_vjps = (_logsumexp_vjp,)


def _shift(op, x, axis):
    """The largest element along `axis` (kept), as a constant: subtracting it before exp
    keeps exp from overflowing, and changes neither softmax nor its gradient."""
    axes = _normalize_axes(op, axis, x.ndim)
    if any(x.shape[a] == 0 for a in axes):
        return _constant(0.0)  # nothing to shift, and max of nothing is undefined
    return stop_gradient(x.max(axes, keepdims=True))


def softmax(x, axis=-1, *, dim=None):
    """exp(x) / sum(exp(x)) along `axis`: positive, summing to 1.

    d/dx: out * (g - sum(g * out)) along the axis (what the composite's rules give).

    >>> softmax(Tensor([0, 0, 0, 0]))
    Tensor([0.25, 0.25, 0.25, 0.25], op='div')
    """
    _no_dim("softmax", dim)
    x = _as_tensor(x, "softmax")
    e = exp(x - _shift("softmax", x, axis))
    return e / e.sum(axis, keepdims=True)


def log_softmax(x, axis=-1, *, dim=None):
    """log(softmax(x)) along `axis`, computed without overflow (as PyTorch).

    d/dx: g - softmax(x) * sum(g) along the axis (what the composite's rules give).

    >>> log_softmax(Tensor([1000, 1000]))
    Tensor([-0.6931471805599453, -0.6931471805599453], op='sub')
    """
    _no_dim("log_softmax", dim)
    x = _as_tensor(x, "log_softmax")
    shifted = x - _shift("log_softmax", x, axis)
    return shifted - log(exp(shifted).sum(axis, keepdims=True))


def flatten(x):
    """The elements as a 1-D tensor, in row-major order.

    >>> flatten(Tensor([[1, 2], [3, 4]]))
    Tensor([1.0, 2.0, 3.0, 4.0], op='reshape')
    """
    return reshape(x, -1)


def stack(tensors, axis=0, *, dim=None):
    """Join tensors of one shape along a new axis.

    >>> stack([Tensor([1, 2]), Tensor([3, 4])], axis=1)
    Tensor([[1.0, 3.0], [2.0, 4.0]], op='concatenate')
    """
    _no_dim("stack", dim)
    _one_list("stack", axis)
    tensors = [_as_any(t, "stack") for t in _as_sequence("stack", tensors)]
    if not tensors:
        raise ValueError("stack: need at least one tensor")
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, but tensor 0 has "
                             f"shape {shape}; all must have the same shape")
    axis = _normalize_axis("stack", axis, len(shape) + 1)
    new_shape = shape[:axis] + (1,) + shape[axis:]
    return concatenate([t.reshape(new_shape) for t in tensors], axis)


# ---- 5a. Shapes ----------------------------------------------------------------------------

def squeeze(x, axis=None, *, dim=None):
    """x without its axes of size 1 (all of them, or those in `axis`, which must be 1).

    >>> squeeze(zeros((1, 2, 1))).shape
    (2,)
    """
    _no_dim("squeeze", dim)
    x = _as_any(x, "squeeze")
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = _normalize_axes("squeeze", axis, x.ndim)
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 "
                                 f"(shape {x.shape})")
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))


def expand_dims(x, axis):
    """x with new axes of size 1, at the positions `axis` of the result (as NumPy).

    >>> expand_dims(zeros((2, 3)), (0, -1)).shape
    (1, 2, 3, 1)
    """
    x = _as_any(x, "expand_dims")
    count = 1 if isinstance(axis, numbers.Integral) else len(_as_sequence("expand_dims", axis))
    axes = _normalize_axes("expand_dims", axis, x.ndim + count)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(tuple(shape))


def swapaxes(x, axis1, axis2):
    """x with two axes swapped.

    >>> swapaxes(zeros((2, 3, 4)), 0, 2).shape
    (4, 3, 2)
    """
    x = _as_any(x, "swapaxes")
    a, b = (_normalize_axis("swapaxes", axis, x.ndim) for axis in (axis1, axis2))
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return x.transpose(order)


def moveaxis(x, source, destination):
    """x with the axes `source` moved to the positions `destination`, the others in order.

    >>> moveaxis(zeros((2, 3, 4)), 0, -1).shape
    (3, 4, 2)
    """
    x = _as_any(x, "moveaxis")
    sources = [_normalize_axis("moveaxis", a, x.ndim) for a in _axes_list(source)]
    targets = [_normalize_axis("moveaxis", a, x.ndim) for a in _axes_list(destination)]
    if len(sources) != len(targets):
        raise ValueError(f"moveaxis: {len(sources)} source axes but {len(targets)} "
                         f"destinations")
    if len(set(sources)) != len(sources) or len(set(targets)) != len(targets):
        raise ValueError(f"moveaxis: an axis is named twice in {source} or {destination}")
    order = [a for a in range(x.ndim) if a not in sources]
    for target, s in sorted(zip(targets, sources)):
        order.insert(target, s)
    return x.transpose(order)


def _axes_list(axes, op="moveaxis"):
    """An axis or a sequence of axes as a list (each checked later by _normalize_axis)."""
    if isinstance(axes, numbers.Integral):
        return [axes]
    if not isinstance(axes, (list, tuple)):
        raise TypeError(f"{op}: axes must be an int or a tuple of ints, got {axes!r:.60} "
                        f"({type(axes).__name__})")
    return list(axes)


def flip(x, axis=None, *, dim=None):
    """x with the order of the elements reversed along `axis` (None: every axis).

    >>> flip(Tensor([[1, 2], [3, 4]]), axis=1).tolist()
    [[2.0, 1.0], [4.0, 3.0]]
    """
    _no_dim("flip", dim)
    x = _as_any(x, "flip")
    axes = _normalize_axes("flip", axis, x.ndim)
    if not axes:
        return x
    return x[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(x.ndim))]


def hstack(tensors):
    """Tensors joined along axis 1 (along axis 0 if they are 1-D), as numpy.hstack.

    >>> hstack([Tensor([1, 2]), Tensor([3])]).tolist()
    [1.0, 2.0, 3.0]
    """
    tensors = [_as_any(t, "hstack") for t in _as_sequence("hstack", tensors)]
    tensors = [t.reshape((1,)) if t.ndim == 0 else t for t in tensors]  # as numpy.atleast_1d
    return concatenate(tensors, 0 if tensors and tensors[0].ndim == 1 else 1)


def vstack(tensors):
    """Tensors joined along axis 0, 1-D ones as rows, as numpy.vstack.

    >>> vstack([Tensor([1, 2]), Tensor([3, 4])]).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    tensors = [_as_any(t, "vstack") for t in _as_sequence("vstack", tensors)]
    return concatenate([t.reshape((1,) * (2 - t.ndim) + t.shape) if t.ndim < 2 else t
                        for t in tensors], 0)


def split(x, sections, axis=0):
    """x cut along `axis` into `sections` equal parts (an int), or at the given indices (a
    list), as numpy.split: a list of tensors, each with its own slice of the gradient.

    >>> [t.tolist() for t in split(arange(5), [2])]
    [[0.0, 1.0], [2.0, 3.0, 4.0]]
    """
    x = _as_any(x, "split")
    axis = _normalize_axis("split", axis, x.ndim)
    n = x.shape[axis]
    if isinstance(sections, numbers.Integral):
        if sections < 1 or n % sections or sections > n + 10_000:  # (sure to be a mistake)
            raise ValueError(f"split: axis {axis} of size {n} does not divide into "
                             f"{sections} equal parts")
        cuts = [n // sections * i for i in range(1, sections)]
    else:
        cuts = [operator.index(i) for i in _as_sequence("split", sections)]
    bounds = [0] + cuts + [n]
    lead = (slice(None),) * axis
    return [x[lead + (slice(start, _max(start, stop)),)] for start, stop in zip(bounds, bounds[1:])]


def tile(x, reps):
    """x repeated reps times along each axis (an int or a tuple), as numpy.tile.

    >>> tile(Tensor([1, 2]), 2).tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    x = _as_any(x, "tile")
    reps = (reps,) if isinstance(reps, numbers.Integral) else tuple(_as_sequence("tile", reps))
    reps = tuple(_int("tile", "reps", r, 0) for r in reps)
    ndim = _max(x.ndim, len(reps))
    reps = (1,) * (ndim - len(reps)) + reps
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    # each axis of x gets a new axis of size r in front of it, broadcast, then merged
    spread = x.reshape(tuple(v for n in x.shape for v in (1, n)))
    big = broadcast_to(spread, tuple(v for r, n in zip(reps, x.shape) for v in (r, n)))
    return big.reshape(tuple(r * n for r, n in zip(reps, x.shape)))


def repeat(x, repeats, axis=None):
    """Each element repeated along `axis` (None: of x flattened), as numpy.repeat: `repeats`
    times, or repeats[i] times for element i when it is a list of counts (one per element,
    or one for all).

    >>> repeat(Tensor([1, 2]), 2).tolist()
    [1.0, 1.0, 2.0, 2.0]
    >>> repeat(Tensor([1, 2, 3]), [1, 0, 2]).tolist()
    [1.0, 3.0, 3.0]
    """
    x = _as_any(x, "repeat")
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = _normalize_axis("repeat", axis, x.ndim)
    n = x.shape[axis]
    if isinstance(repeats, numbers.Integral):
        counts = [_int("repeat", "repeats", repeats, 0)]
    else:
        counts = _as_tensor(repeats, "repeat").reshape(-1).tolist()
        if not all(c.is_integer() and c >= 0 for c in counts):
            raise ValueError(f"repeat: the counts must be integers >= 0, got {counts!r:.60}")
        counts = [int(c) for c in counts]
    if len(counts) not in (1, n):
        raise ValueError(f"repeat: {len(counts)} counts for an axis of {n} elements")
    counts = counts * n if len(counts) == 1 else counts
    _check_size("repeat", x.shape[:axis] + (_sum(counts),) + x.shape[axis + 1:])
    return take(x, [float(i) for i in range(n) for _ in range(counts[i])], axis)


def roll(x, shift, axis=None):
    """x shifted by `shift` places along `axis` (None: of x flattened), the elements that
    leave at one end coming back at the other, as numpy.roll: shift and axis may be tuples,
    broadcast together (one shift for several axes, or several shifts adding up on one).

    >>> roll(Tensor([1, 2, 3]), 1).tolist()
    [3.0, 1.0, 2.0]
    >>> roll(Tensor([[1, 2, 3], [4, 5, 6]]), (1, 1), axis=(0, 1)).tolist()
    [[6.0, 4.0, 5.0], [3.0, 1.0, 2.0]]
    """
    x = _as_any(x, "roll")
    if axis is None:
        return roll(x.reshape(-1), shift, 0).reshape(x.shape)
    shifts = [_int("roll", "shift", s, -sys.maxsize) for s in _axes_list(shift, "roll")]
    axes = [_normalize_axis("roll", a, x.ndim) for a in _axes_list(axis, "roll")]
    if len(shifts) != len(axes) and 1 not in (len(shifts), len(axes)):
        raise ValueError(f"roll: {len(shifts)} shifts do not broadcast with {len(axes)} axes")
    total = {}
    for s, a in zip(shifts * (len(axes) if len(shifts) == 1 else 1),
                    axes * (len(shifts) if len(axes) == 1 else 1)):
        total[a] = total.get(a, 0) + s
    for a, s in total.items():
        n = x.shape[a]
        x = take(x, [float((i - s) % n) for i in range(n)], a) if n and s % n else x
    return x


def tril(x, k=0):
    """x with the elements above the k-th diagonal of its last two axes set to 0 (where,
    not a product: an inf above stays out).   d/dx = 1 where kept

    >>> tril(ones((2, 2))).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    return _triangle("tril", x, k, lambda i, j: j - i <= k)


def triu(x, k=0):
    """x with the elements below the k-th diagonal of its last two axes set to 0.

    >>> triu(ones((2, 2))).tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    return _triangle("triu", x, k, lambda i, j: j - i >= k)


def _triangle(op, x, k, keep):
    x = _as_any(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: needs at least 2 axes, got shape {x.shape}")
    k = _int(op, "k", k, -sys.maxsize)
    n, m = x.shape[-2:]
    mask = [[keep(i, j) for j in range(m)] for i in range(n)]
    return where(Tensor(mask) if n and m else zeros((n, m)), x, x.dtype is bool_ and False)


def diag(x, k=0):
    """The k-th diagonal of a 2-D x as a 1-D tensor, or a 1-D x as the k-th diagonal of a
    square matrix of zeros, as numpy.diag.

    >>> diag(Tensor([[1, 2], [3, 4]])).tolist()
    [1.0, 4.0]
    """
    x = _as_num(x, "diag")
    k = _int("diag", "k", k, -sys.maxsize)
    if x.ndim == 1:
        size = x.shape[0] + _abs(k)
        _check_size("diag", (size, size))
        mask = Tensor([[float(j - i == k) for j in range(size)] for i in range(size)]) \
            if size else zeros((0, 0))
        values = concatenate([x, zeros((_abs(k),))])  # row i holds x[i] (k >= 0), or
        across = values.reshape((size, 1) if k >= 0 else (1, size))  # column j holds x[j]
        return where(mask, broadcast_to(across, (size, size)), 0.0)
    if x.ndim != 2:
        raise ValueError(f"diag: needs 1 or 2 axes, got shape {x.shape}")
    return diagonal(x, k)


def pad(x, pad_width, value=0.0):
    """x with `value` added before and after each axis, as numpy.pad in constant mode:
    pad_width is read as NumPy reads it, broadcast to one (before, after) pair per axis:
    n (n on both sides of every axis), (n,), (before, after) or ((before, after),) for
    every axis, or one pair (or (n,)) per axis.

    >>> pad(Tensor([1, 2]), 1).tolist()
    [0.0, 1.0, 2.0, 0.0]
    >>> pad(Tensor([[1]]), (1, 2)).shape  # every axis: 1 before, 2 after
    (4, 4)
    """
    x = _as_tensor(x, "pad")
    value = _scalar("pad", "value", value)
    for axis, (before, after) in enumerate(_pad_pairs(pad_width, x.shape)):
        side = lambda n: full(x.shape[:axis] + (n,) + x.shape[axis + 1:], value)  # noqa: E731
        x = concatenate([side(before), x, side(after)], axis) if before or after else x
    return x


def _pad_pairs(pad_width, shape):
    """pad_width as one (before, after) pair of ints >= 0 per axis of `shape`: NumPy's
    broadcast of its shape to (ndim, 2)."""
    try:
        data, sides, dtype = _to_lists(pad_width, "pad")
        pairs = broadcast_lists(data, sides, (len(shape), 2)) if dtype is float64 and \
            _broadcast_shapes("pad", sides, (len(shape), 2)) == (len(shape), 2) else None
    except (TypeError, ValueError):
        pairs = None
    if pairs is None:
        raise ValueError(f"pad: pad_width {_text(pad_width)} does not fit a tensor of shape "
                         f"{shape}: give n, (before, after), or one pair per axis")
    for pair in pairs:
        for n in pair:
            if not (n.is_integer() and n >= 0):
                raise ValueError(f"pad: pad_width {_text(pad_width)} holds {n!r}; the widths "
                                 f"must be integers >= 0")
    return [(int(b), int(a)) for b, a in pairs]


def dropout(x, p=0.5, rng=None, mask=None):
    """Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p),
    else 0 (as torch.nn.functional.dropout in training). The mask is drawn from rng; or
    give it (1.0 kept, 0.0 dropped), which a traced program can take as an input: a mask
    drawn inside a traced function is a constant of the program.   d/dx = mask / (1 - p)

    >>> dropout(ones((4,)), 0.5, rng=0).tolist()
    [2.0, 2.0, 0.0, 0.0]
    """
    x = _as_tensor(x, "dropout")
    p = _scalar("dropout", "p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if p == 1.0:  # every element dropped: zeros, and a zero gradient (as PyTorch)
        return where(_filled(x.shape, False), x, 0.0)
    if mask is None:
        mask = uniform(x.shape, rng=rng) >= p
    return where(mask, x / (1.0 - p), 0.0)


# ---- 5b. Arithmetic for models -------------------------------------------------------------

def clip(x, low=None, high=None, *, a_min=None, a_max=None, min=None, max=None):
    """x limited to [low, high], as numpy.clip (where low > high, every value is high);
    low or high may be None (a_min and a_max are NumPy's names for them). d/dx = 1 where
    low <= x <= high, else 0 (as torch.clamp); low and high get the gradient where they
    were chosen. (min= and max= are the names of ndarray.clip's.)

    >>> clip(Tensor([-2, 0.5, 3]), 0, 1).tolist()
    [0.0, 0.5, 1.0]
    """
    x = _as_tensor(x, "clip")
    a_min, a_max = (a_min if min is None else min), (a_max if max is None else max)  # ndarray's
    if (a_min is not None and low is not None) or (a_max is not None and high is not None):
        raise TypeError("clip: give low or a_min (min), high or a_max (max), not both")
    low, high = a_min if low is None else low, a_max if high is None else high
    if low is None and high is None:
        raise ValueError("clip: give low, high or both")
    if low is not None:  # a nan bound makes every value nan, as NumPy's
        low = _as_tensor(low, "clip")
        x = where((x < low) | isnan(low), low, x)
    if high is not None:
        high = _as_tensor(high, "clip")
        x = where((x > high) | isnan(high), high, x)
    return x


def floor(x):
    """The largest integer <= x, as a float (inf, nan and -0.0 stay, as NumPy).   d/dx = 0

    >>> floor(Tensor([-1.5, 2.5])).tolist()
    [-2.0, 2.0]
    """
    return _unary(floor, x, _FLOOR, _NO_GRADIENT[:1])


_FLOOR = _RULES["floor"] = _Elementwise("_floor({0})", "_floor")


def ceil(x):
    """The smallest integer >= x, as a float (ceil(-0.5) = -0.0, as NumPy).   d/dx = 0

    >>> ceil(Tensor([-1.5, 2.5])).tolist()
    [-1.0, 3.0]
    """
    return _unary(ceil, x, _CEIL, _NO_GRADIENT[:1])


_CEIL = _RULES["ceil"] = _Elementwise("_ceil({0})", "_ceil")


def round(x, decimals=0):
    """x rounded to `decimals` places (0: the nearest integer), ties to even, as a float
    (numpy.round, which scales by 10**decimals, rounds and scales back, and so do we).
    d/dx = 0. (Inside this file, Python's round is _round.)

    >>> round(Tensor([0.5, 1.5, -2.5])).tolist()
    [0.0, 2.0, -2.0]
    >>> round(Tensor([1.2345, 1250.0]), 2).tolist(), round(Tensor([1250.0]), -2).tolist()
    ([1.23, 1250.0], [1200.0])
    """
    decimals = _index("round", "decimals", decimals)
    if _abs(decimals) > 400:  # 10.0 ** decimals would overflow Python's float
        raise ValueError(f"round: decimals={_text(decimals)} is out of range (|decimals| <= 400)")
    if decimals > 0:
        scale = 10.0 ** decimals
        return _unary(round, _as_tensor(x, "round") * scale, _ROUND, _NO_GRADIENT[:1]) / scale
    if decimals < 0:
        scale = 10.0 ** -decimals
        return _unary(round, _as_tensor(x, "round") / scale, _ROUND, _NO_GRADIENT[:1]) * scale
    return _unary(round, x, _ROUND, _NO_GRADIENT[:1])


_ROUND = _RULES["round"] = _Elementwise("_round_even({0})", "_round_even")


def mod(x, y):
    """x - floor(x / y) * y, with the sign of y (numpy.mod, Python's %); nan where y is 0.

    d/dx = 1, d/dy = -floor(x / y) (as torch.remainder)

    >>> mod(Tensor([5, -5]), 3).tolist()
    [2.0, 1.0]
    """
    return _binary(mod, x, y, _MOD, _mod_vjps)


_MOD = _RULES["mod"] = _Elementwise("{0} % {1}", operator.mod, safe="_mod")
_mod_vjps = (lambda g, out, x, y: g,
             lambda g, out, x, y: g * -floor(x / y))


def floor_divide(x, y):
    """floor(x / y), as numpy.floor_divide and Python's //; x // 0 gives inf, -inf or nan.
    No gradient (as PyTorch).

    >>> floor_divide(Tensor([5, -5]), 3).tolist()
    [1.0, -2.0]
    """
    return _binary(floor_divide, x, y, _FLOOR_DIVIDE, _NO_GRADIENT)


_FLOOR_DIVIDE = _RULES["floor_divide"] = _Elementwise("{0} // {1}", operator.floordiv,
                                                      safe="_floor_divide")


def erf(x):
    """The error function, 2/sqrt(pi) times the integral of exp(-t**2) from 0 to x.
    d/dx erf(x) = 2/sqrt(pi) exp(-x**2)

    >>> erf(Tensor([0.0, inf])).tolist()
    [0.0, 1.0]
    """
    return _unary(erf, x, _ERF, _erf_vjps)


_ERF = _RULES["erf"] = _Elementwise("erf({0})", math.erf)
_erf_vjps = (lambda g, out, x: g * (2.0 / math.sqrt(math.pi) * exp(-(x * x))),)


def gelu(x):
    """x times the standard normal distribution function at x, with erf (the exact GELU of
    torch.nn.functional.gelu).   d/dx = Phi(x) + x phi(x)

    >>> gelu(Tensor([0.0, 1000.0])).tolist()
    [0.0, 1000.0]
    """
    x = _as_tensor(x, "gelu")
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def cumsum(x, axis=None, *, dim=None, dtype=None, out=None):
    """The running sums along `axis` (None: of x flattened), added in order, as
    numpy.cumsum.   d/dx: g summed from each place to the end (a reversed cumsum)

    >>> cumsum(Tensor([1, 2, 3])).tolist()
    [1.0, 3.0, 6.0]
    """
    _no_dim("cumsum", dim, dtype, out)
    return _running(cumsum, x, axis, cumsum_lists, _cumsum_vjps)


def _running(forward, x, axis, kernel, vjps):
    """The node of cumsum or cumprod: the kernel along `axis` of x (flattened if None)."""
    op = forward.__name__
    x = _as_num(x, op)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = _normalize_axis(op, axis, x.ndim)
    return _node(op, forward, kernel(x.data, x.shape, axis), x.shape, (x,), vjps,
                 {"axis": axis}, x.dtype)


_RULES["cumsum"] = _Kernel("cumsum_lists", lambda shapes, attrs, shape: (shapes[0],
                                                                         attrs["axis"]))
_cumsum_vjps = (lambda g, out, x: flip(cumsum(flip(g, out.attrs["axis"]), out.attrs["axis"]),
                                       out.attrs["axis"]),)


def cumprod(x, axis=None, *, dim=None, dtype=None, out=None):
    """The running products along `axis` (None: of x flattened), multiplied in order, as
    numpy.cumprod. d/dx_i = sum over k >= i of g_k times the product of x_j for j <= k,
    j != i: right where x holds zeros too (it never divides by x).

    >>> cumprod(Tensor([1, 2, 3])).tolist()
    [1.0, 2.0, 6.0]
    """
    _no_dim("cumprod", dim, dtype, out)
    return _running(cumprod, x, axis, cumprod_lists, _cumprod_vjps)


def _cumprod_vjp(g, out, x):
    """prefix_i * s_i: prefix_i the product of the x_j before i (out_(i-1)), and
    s_i = g_i + x_(i+1) s_(i+1), the rest of the sum, scanned from the end."""
    axis, n = out.attrs["axis"], x.shape[out.attrs["axis"]]
    if n == 0:
        return zeros_like(x)
    lead = (slice(None),) * axis

    def at(t, i):  # position i along the axis, the axis kept
        return t[lead + (slice(i, i + 1),)]
    prefix = concatenate([ones_like(at(x, 0)), out[lead + (slice(0, n - 1),)]], axis)
    scans = [at(g, n - 1)]
    for i in range(n - 2, -1, -1):
        scans.append(at(g, i) + at(x, i + 1) * scans[-1])
    return prefix * concatenate(scans[::-1], axis)


_RULES["cumprod"] = _Kernel("cumprod_lists", lambda shapes, attrs, shape: (shapes[0],
                                                                           attrs["axis"]))
_cumprod_vjps = (_cumprod_vjp,)


def sign(x):
    """-1, 0 or 1 as x is negative, zero or positive; nan for nan (as NumPy).   d/dx = 0

    >>> sign(Tensor([-2, 0, 3])).tolist()
    [-1.0, 0.0, 1.0]
    """
    x = _as_tensor(x, "sign")
    up, down = astype(x > 0.0, float64), astype(x < 0.0, float64)
    return where(equal(x, x), up - down, x)  # x == x is false only for nan


# ---- 5c. Activations and losses ------------------------------------------------------------

def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x.   d/dx = 1 where x > 0, else negative_slope

    >>> leaky_relu(Tensor([-100, 2])).tolist()
    [-1.0, 2.0]
    """
    x = _as_tensor(x, "leaky_relu")
    return where(x > 0.0, x, _scalar("leaky_relu", "negative_slope", negative_slope) * x)


def silu(x):
    """x * sigmoid(x).   d/dx = s + x s (1 - s), s = sigmoid(x)

    >>> f"{silu(Tensor(1.0)):.6f}"
    '0.731059'
    """
    x = _as_tensor(x, "silu")
    return x * sigmoid(x)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold, as
    torch.nn.functional.softplus. Computed as max(bx, 0) + log1p(exp(-|bx|)), which
    neither overflows for large x nor loses small values for very negative x.
    d/dx = sigmoid(beta x) (1 above the threshold)

    >>> softplus(Tensor([0, 1000])).tolist()
    [0.6931471805599453, 1000.0]
    """
    x = _as_tensor(x, "softplus")
    beta, threshold = _scalar("softplus", "beta", beta), _scalar("softplus", "threshold",
                                                                 threshold)
    bx = x if beta == 1.0 else x * beta
    soft = maximum(bx, 0.0) + log1p(exp(-abs(bx)))
    return where(bx > threshold, x, soft if beta == 1.0 else soft / beta)


def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1).   d/dx = 1 where x > 0, else alpha exp(x)

    exp sees min(x, 0) only, so a large x cannot make the unused branch inf, whose gradient
    would be 0 * inf = nan.

    >>> elu(Tensor([-1000, 2])).tolist()
    [-1.0, 2.0]
    """
    x = _as_tensor(x, "elu")
    alpha = _scalar("elu", "alpha", alpha)
    return where(x > 0.0, x, alpha * (exp(where(x > 0.0, 0.0, x)) - 1.0))


def var(x, axis=None, ddof=0, keepdims=False, *, dim=None, dtype=None, out=None):
    """The variance over `axis`: the sum of squared deviations from the mean over n - ddof
    (as NumPy, which divides by 0 where n - ddof <= 0: inf, or nan for no elements).
    d/dx = 2 (x - mean) / (n - ddof)

    >>> var(Tensor([1, 2, 3, 4])).item()
    1.25
    """
    _no_dim("var", dim, dtype, out)
    x = _as_num(x, "var")
    axes = _normalize_axes("var", axis, x.ndim)
    count = _max(math.prod(x.shape[a] for a in axes) - _scalar("var", "ddof", ddof), 0.0)
    deviation = x - x.mean(axes, keepdims=True)
    if x.dtype is complex128:  # NumPy's: the mean of |deviation|**2, a real number
        deviation = abs(deviation)
    return (deviation * deviation).sum(axes, keepdims) / float(count)


def std(x, axis=None, ddof=0, keepdims=False, *, dim=None, dtype=None, out=None):
    """The standard deviation, sqrt(var(x, axis, ddof)); its gradient is 0 where the
    variance is 0 (as PyTorch's), not 0/0.

    >>> std(Tensor([1, 3])).item()
    1.0
    """
    _no_dim("std", dim, dtype, out)
    return _where_zero(var(x, axis, ddof, keepdims), sqrt)  # d/dx 0 where var is 0, as torch


def layer_norm(x, axis=-1, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over `axis`, the biased variance (as
    torch.nn.functional.layer_norm, without its weight and bias).

    >>> [f"{v:.4f}" for v in layer_norm(Tensor([1.0, 3.0])).tolist()]
    ['-1.0000', '1.0000']
    """
    x = _as_tensor(x, "layer_norm")
    axes = _normalize_axes("layer_norm", axis, x.ndim)
    eps = _scalar("layer_norm", "eps", eps)
    return (x - x.mean(axes, keepdims=True)) / sqrt(var(x, axes, keepdims=True) + eps)


def mse_loss(input, target, reduction="mean"):
    """The squared differences, reduced as PyTorch's mse_loss: "mean", "sum" or "none".

    >>> mse_loss(Tensor([1, 2]), Tensor([1, 4])).item()
    2.0
    """
    input, target = _as_tensor(input, "mse_loss"), _as_tensor(target, "mse_loss")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input has shape {input.shape}, target {target.shape}")
    return _reduction_of("mse_loss", (input - target) ** 2.0, reduction)


def nll_loss(log_probs, labels, axis=-1, reduction="mean"):
    """-log_probs at each integer label along `axis`, reduced as PyTorch's nll_loss ("mean",
    "sum" or "none"). labels: integer values, the shape of log_probs without `axis`; a
    label outside [0, classes) is a ValueError.   d/dlog_probs = -1 at the label (/ n)

    >>> nll_loss(Tensor([[-1.0, -2.0], [-3.0, -4.0]]), [1, 0]).item()
    2.5
    """
    log_probs = _as_tensor(log_probs, "nll_loss")
    labels = _as_tensor(labels, "nll_loss")
    if log_probs.ndim == 0:
        raise ValueError("nll_loss: log_probs needs an axis of classes, got a 0-d tensor")
    axis = _normalize_axis("nll_loss", axis, log_probs.ndim)
    rest = log_probs.shape[:axis] + log_probs.shape[axis + 1:]
    if labels.shape != rest:
        raise ValueError(f"nll_loss: labels have shape {labels.shape}, but log_probs of shape "
                         f"{log_probs.shape} need {rest} (its shape without axis {axis})")
    chosen = moveaxis(one_hot(labels, log_probs.shape[axis]), -1, axis)
    # where, not a product: 0 * -inf would be nan where a class other than the label is -inf
    picked = where(chosen, log_probs, 0.0).sum(axis)
    return _reduction_of("nll_loss", -picked, reduction)


def cross_entropy(logits, labels, axis=-1, reduction="mean"):
    """nll_loss(log_softmax(logits, axis), labels, axis, reduction): stable at logits of
    +-1000.   d/dlogits = softmax(logits) - one_hot(labels) (/ n)

    >>> cross_entropy(Tensor([[1000.0, 0.0]]), [1]).item()
    1000.0
    """
    logits = _as_tensor(logits, "cross_entropy")
    return nll_loss(log_softmax(logits, axis), labels, axis, reduction)


def _reduction_of(op, losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ---- 5d. Convolution and pooling -----------------------------------------------------------
#
# A convolution is a matmul: im2col copies every window of the input into one row of a
# matrix of patches, and the patches times the filters, reshaped, are the output. im2col is
# the primitive (its vjp, col2im, adds each patch's gradient back where it was read), so a
# conv is three nodes, not thousands of slices, and runs on the matmul kernel.

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """The 2-D convolution of torch.nn.functional.conv2d (a cross-correlation): x of shape
    (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None; stride, padding (zeros) and
    dilation each an int or a pair. The result has shape (N, O, OH, OW).

    d/dx, d/dweight, d/dbias: those of the matmul of patches, added back (col2im).

    >>> conv2d(ones((1, 1, 3, 3)), ones((1, 1, 2, 2))).tolist()
    [[[[4.0, 4.0], [4.0, 4.0]]]]
    """
    x, weight = _as_tensor(x, "conv2d"), _as_tensor(weight, "conv2d")
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: x of shape {x.shape} must be (N, C, H, W) and weight of "
                         f"shape {weight.shape} (O, C, kh, kw), with the same C")
    n, o = x.shape[0], weight.shape[0]
    patches = _im2col(x, weight.shape[2:], _pair("conv2d", "stride", stride, 1),
                      _pair("conv2d", "padding", padding, 0),
                      _pair("conv2d", "dilation", dilation, 1), 0.0)
    out_h, out_w = patches.attrs["out"]
    out = patches @ weight.reshape((o, -1)).T  # (N, OH * OW, O)
    out = out.transpose((0, 2, 1)).reshape((n, o, out_h, out_w))
    if bias is not None:
        bias = _as_tensor(bias, "conv2d")
        if bias.shape != (o,):
            raise ValueError(f"conv2d: bias has shape {bias.shape}, not ({o},)")
        out = out + bias.reshape((1, o, 1, 1))
    return out


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """The 1-D convolution of torch.nn.functional.conv1d: x (N, C, L), weight (O, C, k).

    >>> conv1d(ones((1, 1, 4)), ones((1, 1, 2))).tolist()
    [[[2.0, 2.0, 2.0]]]
    """
    x, weight = _as_tensor(x, "conv1d"), _as_tensor(weight, "conv1d")
    if x.ndim != 3 or weight.ndim != 3:
        raise ValueError(f"conv1d: x of shape {x.shape} must be (N, C, L) and weight of "
                         f"shape {weight.shape} (O, C, k)")
    out = conv2d(x.reshape(x.shape[:2] + (1, x.shape[2])),
                 weight.reshape(weight.shape[:2] + (1, weight.shape[2])), bias,
                 (1, _int("conv1d", "stride", stride, 1)),
                 (0, _int("conv1d", "padding", padding, 0)),
                 (1, _int("conv1d", "dilation", dilation, 1)))
    return out.reshape(out.shape[:2] + out.shape[3:])


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """The largest value of each window, as torch.nn.functional.max_pool2d (padding counts
    as -inf); x (N, C, H, W). d/dx: g to the largest element of each window (tied ones share
    it equally, as torch.amax; PyTorch's max_pool2d gives it to one of them).

    >>> max_pool2d(Tensor([[[[1, 2], [3, 4]]]]), 2).tolist()
    [[[[4.0]]]]
    """
    return _pool("max_pool2d", x, kernel_size, stride, padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """The mean of each window, as torch.nn.functional.avg_pool2d (padding counts as zeros
    in the mean, PyTorch's count_include_pad=True); x (N, C, H, W).

    >>> avg_pool2d(Tensor([[[[1, 2], [3, 4]]]]), 2).tolist()
    [[[[2.5]]]]
    """
    return _pool("avg_pool2d", x, kernel_size, stride, padding)


def _pool(op, x, kernel_size, stride, padding):
    x = _as_tensor(x, op)
    if x.ndim != 4:
        raise ValueError(f"{op}: x of shape {x.shape} must be (N, C, H, W)")
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    n, c, h, w = x.shape
    patches = _im2col(x.reshape((n * c, 1, h, w)), kernel, stride,
                      _pair(op, "padding", padding, 0), (1, 1),
                      -inf if op == "max_pool2d" else 0.0)
    pooled = patches.max(axis=2) if op == "max_pool2d" else patches.mean(axis=2)
    return pooled.reshape((n, c) + patches.attrs["out"])


def _pair(op, name, value, least):
    """An int or a pair of ints, each at least `least`, as a pair."""
    values = (value, value) if isinstance(value, numbers.Integral) else tuple(
        _as_sequence(op, value))
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair, got {value!r}")
    return tuple(_int(op, name, v, least) for v in values)


def _index(op, name, value):
    """value as an int (any integral type, not a bool), or a TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {value!r:.60} "
                        f"({type(value).__name__})")
    return operator.index(value)


def _int(op, name, value, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{op}: {name} must be an int >= {least}, got {value!r}")
    return int(value)


def _im2col(x, kernel, stride, padding, dilation, fill):
    """The windows of x (N, C, H, W) as rows: shape (N, OH * OW, C * kh * kw); outside x,
    `fill`. attrs["out"] is (OH, OW)."""
    n, c, h, w = x.shape
    out_h = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"im2col: a window of {kernel} (dilation {dilation}) does not fit "
                         f"an input of {h} x {w} with padding {padding}")
    shape = _check_size("im2col", (n, out_h * out_w, c * kernel[0] * kernel[1]))
    attrs = {"kernel": tuple(kernel), "stride": stride, "padding": padding,
             "dilation": dilation, "fill": fill, "out": (out_h, out_w)}
    data = im2col_lists(x.data, x.shape, kernel, stride, padding, dilation, fill)
    return _node("im2col", _im2col_again, data, shape, (x,), _im2col_vjps, attrs)


def _im2col_again(x, kernel, stride, padding, dilation, fill, out):
    """_im2col, called as node.forward(*node.inputs, **node.attrs) is."""
    return _im2col(x, kernel, stride, padding, dilation, fill)


def _col2im(g, shape, kernel, stride, padding, dilation):
    """The vjp of im2col: each patch's gradient added back where it was read (linear in g,
    so its own vjp is im2col)."""
    data = col2im_lists(g.data, shape, kernel, stride, padding, dilation)
    return _node("col2im", _col2im, data, shape, (g,), _col2im_vjps,
                 {"shape": shape, "kernel": kernel, "stride": stride, "padding": padding,
                  "dilation": dilation})


def _im2col_args(shapes, attrs, shape):
    return (shapes[0], attrs["kernel"], attrs["stride"], attrs["padding"], attrs["dilation"],
            attrs["fill"])


_RULES["im2col"] = _Kernel("im2col_lists", _im2col_args)
_RULES["col2im"] = _Kernel("col2im_lists", lambda shapes, attrs, shape: (
    attrs["shape"], attrs["kernel"], attrs["stride"], attrs["padding"], attrs["dilation"]))
_im2col_vjps = (lambda g, out, x: _col2im(g, x.shape, out.attrs["kernel"],
                                          out.attrs["stride"], out.attrs["padding"],
                                          out.attrs["dilation"]),)
_col2im_vjps = (lambda g, out, g0: _im2col(g, out.attrs["kernel"], out.attrs["stride"],
                                           out.attrs["padding"], out.attrs["dilation"], 0.0),)


# ---- 5e. Contractions: diagonal, dot, inner, outer, tensordot, einsum ----------------------
#
# Every contraction is made of transposes, reshapes and one matmul per pair of operands
# (_contract), so its gradient is theirs, and it costs what that matmul costs: a transpose or
# reshape that would change nothing is left out, so einsum("bij,bjk->bik", x, y) is the one
# matmul node that x @ y makes.

def diagonal(x, offset=0, axis1=0, axis2=1):
    """The diagonal of x in the plane of axis1 and axis2 (offset above it if > 0, below if
    < 0), as numpy.diagonal: its last axis is the diagonal, the others are x's other axes.
    d/dx: g back on that diagonal, 0 elsewhere

    >>> diagonal(Tensor([[1, 2], [3, 4]]), 1).tolist()
    [2.0]
    """
    op = "diagonal"
    x = _as_any(x, op)
    if x.ndim < 2:
        raise ValueError(f"diagonal: needs at least 2 axes, got shape {x.shape}")
    offset = _int(op, "offset", offset, -sys.maxsize)
    a1, a2 = _normalize_axis(op, axis1, x.ndim), _normalize_axis(op, axis2, x.ndim)
    if a1 == a2:
        raise ValueError(f"diagonal: axis1 and axis2 are both axis {a1} of shape {x.shape}")
    n, m = x.shape[a1], x.shape[a2]
    x = _arranged(x, [a for a in range(x.ndim) if a not in (a1, a2)] + [a1, a2])
    positions = [float(i * m + i + offset) for i in range(n) if 0 <= i + offset < m]
    return take(x.reshape(x.shape[:-2] + (n * m,)), positions, -1)


def _matrix_trace(x, offset=0, axis1=0, axis2=1):
    """The sum of a diagonal of x (see diagonal), as numpy.trace: the method t.trace(), and
    rax.trace(x) when x is no function (rax.trace(f) traces f, chapter 10).
    d/dx = 1 on the diagonal

    >>> Tensor([[1, 2], [3, 4]]).trace().item()
    5.0
    """
    return diagonal(x, offset, axis1, axis2).sum(-1)


def _arranged(x, axes):
    """transpose(x, axes), or x itself when that changes nothing."""
    return x if list(axes) == list(range(x.ndim)) else transpose(x, axes)


def _reshaped(x, shape):
    return x if x.shape == tuple(shape) else x.reshape(shape)


def _contract(op, x, x_labels, y, y_labels, keep):
    """x times y, summed over the labels they share that are not in `keep`: x and y have one
    label (a character) per axis. The result's labels are the shared ones that are kept (a
    batch), then x's own, then y's own, each in its operand's order. An axis of side 1
    against a longer one of the same label is broadcast, as NumPy's einsum does."""
    shared = [c for c in x_labels if c in y_labels]
    batch = [c for c in shared if c in keep]
    summed = [c for c in shared if c not in keep]
    x_own = [c for c in x_labels if c not in y_labels]
    y_own = [c for c in y_labels if c not in x_labels]
    side = dict(zip(y_labels, y.shape))
    for c, n in zip(x_labels, x.shape):
        if c in side and n != side[c] and 1 not in (n, side[c]):
            raise ValueError(f"{op}: label {c!r} has side {n} in one operand and {side[c]} in "
                             f"another (shapes {x.shape} and {y.shape})")
        if c not in side or side[c] == 1:
            side[c] = n
    sides = lambda labels: tuple(side[c] for c in labels)  # noqa: E731
    x_order, y_order = batch + x_own + summed, batch + summed + y_own
    x = _broadcast(_arranged(x, [x_labels.index(c) for c in x_order]), sides(x_order))
    y = _broadcast(_arranged(y, [y_labels.index(c) for c in y_order]), sides(y_order))
    rows, depth, columns = (math.prod(sides(part)) for part in (x_own, summed, y_own))
    lead = sides(batch)  # matmul's batch axes, as they are (a reshape would copy)
    product = matmul(_reshaped(x, lead + (rows, depth)), _reshaped(y, lead + (depth, columns)))
    return _reshaped(product, sides(batch + x_own + y_own)), batch + x_own + y_own


def tensordot(a, b, axes=2):
    """The sum of products over the given axes of a and b, as numpy.tensordot: axes=n sums
    the last n axes of a against the first n of b; axes=(a_axes, b_axes) pairs them up. The
    result's axes are a's others, then b's others.

    >>> tensordot(Tensor([[1, 2], [3, 4]]), Tensor([[1, 0], [0, 1]])).item()  # sum of a * b
    5.0
    """
    op = "tensordot"
    a, b = _as_num(a, op), _as_num(b, op)
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        n = _int(op, "axes", axes, 0)
        if n > _min(a.ndim, b.ndim):
            raise ValueError(f"{op}: axes={n} but the shapes are {a.shape} and {b.shape}")
        a_axes, b_axes = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        try:
            a_axes, b_axes = axes
        except (TypeError, ValueError):
            raise TypeError(f"{op}: axes must be an int or a pair (a_axes, b_axes), got "
                            f"{axes!r}") from None
        a_axes, b_axes = ([v] if isinstance(v, numbers.Integral) else list(v)
                          for v in (a_axes, b_axes))
        a_axes = [_normalize_axis(op, v, a.ndim) for v in a_axes]
        b_axes = [_normalize_axis(op, v, b.ndim) for v in b_axes]
        if len(a_axes) != len(b_axes) or len(set(a_axes)) < len(a_axes) \
                or len(set(b_axes)) < len(b_axes):
            raise ValueError(f"{op}: axes {axes!r} do not pair distinct axes one to one")
    for i, j in zip(a_axes, b_axes):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"{op}: axis {i} of a (shape {a.shape}) has side {a.shape[i]} "
                             f"but axis {j} of b (shape {b.shape}) has {b.shape[j]}")
    a_labels = [chr(0x100 + i) for i in range(a.ndim)]
    b_labels = [a_labels[a_axes[b_axes.index(j)]] if j in b_axes else chr(0x200 + j)
                for j in range(b.ndim)]
    kept = [c for c in a_labels + b_labels if (c in a_labels) != (c in b_labels)]
    return _contract(op, a, a_labels, b, b_labels, kept)[0]


def dot(a, b):
    """The dot product, as numpy.dot: a * b if either is 0-d; the sum over the last axis of
    a and of b if b is 1-D; else over the last axis of a and the second-to-last of b (so
    matmul for 2-D, without its broadcasting of batch axes).

    >>> dot(Tensor([1, 2]), Tensor([3, 4])).item()
    11.0
    """
    a, b = _as_num(a, "dot"), _as_num(b, "dot")
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    return tensordot(a, b, ([a.ndim - 1], [_max(b.ndim - 2, 0)]))


def inner(a, b):
    """The sum of products over the last axes of a and b, as numpy.inner (a * b if either
    is 0-d); the result's axes are a's others, then b's others.

    >>> inner(Tensor([[1, 2], [3, 4]]), Tensor([1, 1])).tolist()
    [3.0, 7.0]
    """
    a, b = _as_num(a, "inner"), _as_num(b, "inner")
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    return tensordot(a, b, ([-1], [-1]))


def outer(a, b):
    """Every element of a (flattened) times every element of b: shape (a.size, b.size), as
    numpy.outer.

    >>> outer(Tensor([1, 2]), Tensor([1, 10, 100])).tolist()
    [[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]]
    """
    a, b = _as_num(a, "outer"), _as_num(b, "outer")
    return a.reshape((-1, 1)) * b.reshape((1, -1))


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def einsum(subscripts, *operands, optimize=False):
    """Einstein summation, as numpy.einsum: "ij,jk->ik" is a matmul, "ii->i" a diagonal,
    "ii" a trace, "i,j->ij" an outer product, "...ij,...jk" a batch of matmuls. Without
    "->" the output is the labels that appear once, in alphabetical order, after "...".
    Labels repeated within an operand take its diagonal; labels missing from the output are
    summed; an axis of side 1 broadcasts against a longer one of its label. The sublist
    form einsum(x, [0, 1], y, [1, 2], [0, 2]) (ints and ... for labels) works too.

    The operands are contracted left to right, a pair at a time, each pair one matmul
    (see _contract), so the gradient is that of matmul, transpose and reshape; `optimize`
    is accepted for NumPy's sake and changes nothing.

    >>> einsum("ij,jk->ik", Tensor([[1, 2]]), Tensor([[3], [4]])).tolist()
    [[11.0]]
    >>> einsum("ii", Tensor([[1, 2], [3, 4]])).item()
    5.0
    """
    op = "einsum"
    if not isinstance(subscripts, str):  # the sublist form
        subscripts, operands = _einsum_sublists((subscripts,) + operands)
    operands = [_as_num(x, op) for x in operands]
    inputs, output = _einsum_labels(subscripts.replace(" ", ""), operands)
    for k, labels in enumerate(inputs):  # repeated labels: take the diagonal
        x = operands[k]
        for c in sorted(set(labels), key=labels.index):
            while labels.count(c) > 1:
                i = labels.index(c)
                j = labels.index(c, i + 1)
                if x.shape[i] != x.shape[j]:
                    raise ValueError(f"{op}: label {c!r} repeats in operand {k} over axes "
                                     f"of sides {x.shape[i]} and {x.shape[j]}")
                x = diagonal(x, 0, i, j)
                labels = [v for a, v in enumerate(labels) if a not in (i, j)] + [c]
        operands[k], inputs[k] = x, labels
    x, labels = operands[0], inputs[0]
    for k in range(1, len(operands)):
        later = set(output).union(*inputs[k + 1:])  # the labels wanted after operand k
        x, labels = _sum_unneeded(x, labels, later.union(inputs[k]))
        y, y_labels = _sum_unneeded(operands[k], inputs[k], later.union(labels))
        x, labels = _contract(op, x, labels, y, y_labels, later)
    x, labels = _sum_unneeded(x, labels, output)
    return _arranged(x, [labels.index(c) for c in output])


def _sum_unneeded(x, labels, needed):
    """x summed over the axes whose labels are not needed, and the labels left."""
    alone = tuple(a for a, c in enumerate(labels) if c not in needed)
    return (x.sum(alone), [c for c in labels if c in needed]) if alone else (x, labels)


def _einsum_labels(subscripts, operands):
    """Each operand's labels and the output's, as lists of characters, "..." spelled out as
    one label per axis it stands for (right-aligned across operands, as broadcasting)."""
    op = "einsum"
    left, arrow, right = subscripts.partition("->")
    terms = left.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"{op}: {subscripts!r} names {len(terms)} operands, but "
                         f"{len(operands)} are given")
    for term in terms + [right]:
        bad = set(term.replace("...", "")) - set(_LETTERS)
        if bad or term.count("...") > 1:
            raise ValueError(f"{op}: {subscripts!r}: labels are letters, with at most one "
                             f"'...' per operand; got {term!r}")
    inputs, most = [], 0
    for term, x in zip(terms, operands):
        named = len(term.replace("...", ""))
        if named > x.ndim or (named < x.ndim and "..." not in term):
            raise ValueError(f"{op}: {term!r} labels {named} axes, but the operand has shape "
                             f"{x.shape}")
        most = _max(most, x.ndim - named)
        inputs.append((term, x.ndim - named))
    ellipsis = [chr(0x100 + i) for i in range(most)]
    labels = [_spelled_out(term, ellipsis[most - n:]) for term, n in inputs]
    if arrow:
        if "..." not in right and most and any("..." in t for t in terms):
            raise ValueError(f"{op}: {subscripts!r}: the output must say '...' where the "
                             f"operands do")
        output = _spelled_out(right, ellipsis)
        for c in output:
            if output.count(c) > 1 or not any(c in term for term in labels):
                raise ValueError(f"{op}: {subscripts!r}: output label {c!r} is repeated or "
                                 f"in no operand")
    else:
        every = [c for term in labels for c in term]
        output = ellipsis + sorted(c for c in set(every) if every.count(c) == 1
                                   and c not in ellipsis)
    return labels, output


def _spelled_out(term, ellipsis):
    """The labels of one term, with "..." replaced by the labels it stands for."""
    before, dots, after = term.partition("...")
    return list(before) + (ellipsis if dots else []) + list(after)


def _einsum_sublists(arguments):
    """numpy's sublist form, einsum(x, [0, 1], y, [1, 2], [0, 2]), as a subscripts string."""
    def term(sublist):
        try:
            return "".join("..." if v is Ellipsis else _LETTERS[v] for v in sublist)
        except (TypeError, IndexError):
            raise ValueError(f"einsum: a sublist holds ints 0-51 and ..., got "
                             f"{sublist!r}") from None
    output = "->" + term(arguments[-1]) if len(arguments) % 2 else ""
    arguments = arguments[:len(arguments) - len(arguments) % 2]
    return ",".join(term(s) for s in arguments[1::2]) + output, arguments[0::2]


# ---- 5f. Linear algebra: rax.linalg --------------------------------------------------------
#
# numpy.linalg's functions on the last two axes of a tensor, batched over the others. Each
# is a primitive with a pure-Python kernel (appendix A): Gaussian elimination with partial
# pivoting (inv, solve, det, slogdet), Cholesky, and Jacobi's eigenvalue iteration (eigh).
# Their vjp rules are the textbook ones, written with rax's ops (inv and solve among them),
# so second derivatives come for free; svd, pinv and norm are made of them. Like NumPy, a
# matrix that elimination finds singular (a pivot of exactly 0) raises LinAlgError, a
# ValueError. Each takes complex input too (eig always gives complex results): cholesky and
# eigh then read a Hermitian matrix, and the rules add the conjugates of JAX's convention
# (5h), written so that conj of a real tensor (itself) leaves the real rules as they were.

class LinAlgError(ValueError):
    """A matrix that a linalg function cannot take: singular (inv, solve), not positive
    definite (cholesky), as numpy.linalg.LinAlgError."""


def _square(op, a, complex_ok=False):
    a = _as_num(a, op) if complex_ok else _as_tensor(a, op)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{op}: needs square matrices in the last two axes, got shape "
                         f"{a.shape}")
    return a


def _mT(x):
    """The matrices of x transposed (its last two axes swapped)."""
    return swapaxes(x, -1, -2)


def inv(a):
    """The inverse of each matrix, as numpy.linalg.inv.   d/da = -inv(a)^T g inv(a)^T

    >>> inv(Tensor([[2, 0], [0, 4]])).tolist()
    [[0.5, 0.0], [0.0, 0.25]]
    """
    a = _square("inv", a, complex_ok=True)
    return _node("inv", inv, inv_lists(a.data, a.shape), a.shape, (a,), _inv_vjps, _NO_ATTRS,
                 a.dtype)


_RULES["inv"] = _Kernel("inv_lists", lambda shapes, attrs, shape: (shapes[0],))
_inv_vjps = (lambda g, out, a: -(_mT(out) @ g @ _mT(out)),)


def solve(a, b):
    """x with a @ x = b, as numpy.linalg.solve: b is one vector (..., n) if it is 1-D, else
    (..., n, k) columns; the batch axes of a and b broadcast together.
    d/db = solve(a^T, g), d/da = -d/db x^T

    >>> solve(Tensor([[2, 0], [0, 4]]), Tensor([2, 2])).tolist()
    [1.0, 0.5]
    """
    a, b = _one_dtype((_square("solve", a, complex_ok=True), _as_num(b, "solve")))
    vector = b.ndim == 1
    if vector:
        b = b.reshape(b.shape + (1,))
    if b.ndim < 2 or b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve: b of shape {b.shape[:-1] if vector else b.shape} does not "
                         f"fit the matrices of shape {a.shape}")
    try:
        batch = _broadcast_shapes("solve", a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"solve: the batch axes of shapes {a.shape} and {b.shape} cannot be "
                         f"broadcast together") from None
    a, b = _broadcast(a, batch + a.shape[-2:]), _broadcast(b, batch + b.shape[-2:])
    x = _node("solve", solve, solve_lists(a.data, b.data, a.shape, b.shape), b.shape, (a, b),
              _solve_vjps, _NO_ATTRS, a.dtype)
    return x.reshape(x.shape[:-1]) if vector else x


_RULES["solve"] = _Kernel("solve_lists", lambda shapes, attrs, shape: tuple(shapes))
_solve_vjps = (lambda g, out, a, b: -(solve(_mT(a), g) @ _mT(out)),
               lambda g, out, a, b: solve(_mT(a), g))


def det(a):
    """The determinant of each matrix, as numpy.linalg.det (0.0 for a singular one).
    d/da = the cofactor matrix of a (= det(a) inv(a)^T where a is invertible), which is
    right at singular matrices too, where it is computed from the n**2 minors (n**5 work).
    The second derivative divides by det(a): nan at a singular matrix.

    >>> det(Tensor([[1, 2], [3, 4]])).item()
    -2.0
    """
    a = _square("det", a, complex_ok=True)
    return _node("det", det, det_lists(a.data, a.shape), a.shape[:-2], (a,), _det_vjps,
                 _NO_ATTRS, a.dtype)


_RULES["det"] = _Kernel("det_lists", lambda shapes, attrs, shape: (shapes[0],))
_det_vjps = (lambda g, out, a: g.reshape(g.shape + (1, 1)) * _cofactors(a),)


def _cofactors(a):
    """The cofactor matrix of each matrix of a: C[i][j] = (-1)**(i+j) times the determinant
    of a without row i and column j; the gradient of det.

    Its own vjp (for second derivatives of det): d<W, C> / da = (<W, C> C - C W^T C) / det(a),
    from C = det(a) inv(a)^T; nan at a singular matrix, where it divides by 0.
    """
    return _node("cofactors", _cofactors, cofactors_lists(a.data, a.shape), a.shape, (a,),
                 _cofactors_vjps, _NO_ATTRS, a.dtype)


_RULES["cofactors"] = _Kernel("cofactors_lists", lambda shapes, attrs, shape: (shapes[0],))
_cofactors_vjps = (lambda g, out, a: (
    (g * out).sum((-2, -1), keepdims=True) * out - out @ _mT(g) @ out)
    / det(a).reshape(a.shape[:-2] + (1, 1)),)


def slogdet(a):
    """(sign, logabsdet) of each matrix's determinant, as numpy.linalg.slogdet: det(a) =
    sign * exp(logabsdet), without overflow; (0.0, -inf) for a singular matrix. A complex
    matrix's sign is det / |det|, complex128 (0j if singular); logabsdet is real always.
    d logabsdet / da = inv(a)^T, which a singular matrix has not: there the gradient raises
    LinAlgError (log |det| is -inf, with no derivative). A real sign has no gradient; a
    complex one moves as d sign = i sign imag(tr(inv(a) da)), so its cotangent passes to a
    as i imag(g sign) inv(a)^T (JAX's convention, 5h).

    >>> sign, logabsdet = slogdet(Tensor([[-1e200, 0], [0, 1e200]]))
    >>> sign.item(), logabsdet.item()
    (-1.0, 921.0340371976183)
    """
    a = _square("slogdet", a, complex_ok=True)
    sign = _node("sign_of_det", _sign_of_det, sign_of_det_lists(a.data, a.shape),
                 a.shape[:-2], (a,), _complex_sign_vjps if a.dtype is complex128 else (None,),
                 _NO_ATTRS, a.dtype)
    return sign, _node("logabsdet", _logabsdet, logabsdet_lists(a.data, a.shape),
                       a.shape[:-2], (a,), _logabsdet_vjps)


def _sign_of_det(a):
    return slogdet(a)[0]


def _logabsdet(a):
    return slogdet(a)[1]


_RULES["sign_of_det"] = _Kernel("sign_of_det_lists", lambda shapes, attrs, shape: (shapes[0],))
_RULES["logabsdet"] = _Kernel("logabsdet_lists", lambda shapes, attrs, shape: (shapes[0],))
_logabsdet_vjps = (lambda g, out, a: g.reshape(g.shape + (1, 1)) * _mT(inv(a)),)
_complex_sign_vjps = (lambda g, out, a: _complex(0.0, imag(g * out)).reshape(g.shape + (1, 1))
                      * _mT(inv(a)),)


def cholesky(a, upper=False):
    """The lower-triangular L with L @ L^T = a for each symmetric positive-definite matrix,
    as numpy.linalg.cholesky: only the lower triangle of a is read (the upper with upper=True,
    which returns L^T). Not positive definite: LinAlgError. A complex a is Hermitian: L @ L^H
    = a, L's diagonal real (held as complex128), the imaginary parts of a's diagonal not
    read (as LAPACK); upper=True returns L^H.

    d/da (Murray, 2016): with P = Phi(L^T g), Phi the lower triangle with its diagonal
    halved, and S = L^-T P L^-1, the gradient is S + S^T below the diagonal and S on it: the
    derivative with respect to the entries that are read (those above it are not: 0). For
    complex a (JAX's convention, 5h): S = L^-T P conj(L)^-1, S + S^H below the diagonal and
    real(S) on it.

    >>> cholesky(Tensor([[4, 2], [2, 5]])).tolist()
    [[2.0, 0.0], [1.0, 2.0]]
    """
    a = _square("cholesky", a, complex_ok=True)
    if upper:
        return conj(_mT(cholesky(conj(_mT(a)))))  # (conj of a real tensor is itself)
    return _node("cholesky", cholesky, cholesky_lists(a.data, a.shape), a.shape, (a,),
                 _cholesky_vjps, _NO_ATTRS, a.dtype)


_RULES["cholesky"] = _Kernel("cholesky_lists", lambda shapes, attrs, shape: (shapes[0],))


def _cholesky_vjp(g, out, a):
    halve_diagonal = 1.0 - 0.5 * eye(a.shape[-1])
    p = tril(_mT(out) @ g) * halve_diagonal
    s = _mT(solve(conj(_mT(out)), _mT(solve(_mT(out), p))))  # conj: a complex L's only
    return tril(s + conj(_mT(s))) * halve_diagonal


_cholesky_vjps = (_cholesky_vjp,)


def eigh(a, UPLO="L"):
    """(eigenvalues, eigenvectors) of each symmetric matrix, as numpy.linalg.eigh: the
    eigenvalues ascending, the eigenvectors the columns of an orthogonal matrix, each scaled
    so that its entry of largest magnitude is positive. Only the lower triangle of a is read
    (the upper with UPLO="U"); nan everywhere for a matrix with an inf or nan. A complex a is
    Hermitian: the eigenvalues real (float64), the eigenvectors the columns of a unitary
    matrix (complex128), each with its entry of largest magnitude real and positive (NumPy's
    are the same up to a phase); the imaginary parts of a's diagonal are not read.

    The gradient is the standard one, V (diag(gw) + F * (V^T gV)) V^T with F[i][j] =
    1 / (w[j] - w[i]), taken on the triangle that is read (as HIPS autograd). For complex a
    it is conj(V) (...) V^T (JAX's convention, 5h; as JAX's, it is right for what does not
    depend on the phase of each eigenvector, which no choice of phase fixes). At repeated
    eigenvalues the eigenvectors are not unique: the pairs of equal eigenvalues (within n
    ulps of the largest, as rounding splits a repeated one) are left out of F, so the
    gradient is right for the eigenvalues and for what depends only on the eigenspaces (a
    projection onto one), and not meaningful for a single eigenvector there.

    >>> w, v = eigh(Tensor([[2, 1], [1, 2]]))
    >>> [f"{e:.12f}" for e in w.tolist()]
    ['1.000000000000', '3.000000000000']
    """
    both = _eigh_packed(a, UPLO)  # one node holds both: row 0, then V
    return real(both[..., 0, :]), both[..., 1:, :]  # (real: the values of a complex one)


def _eigh_packed(a, UPLO):
    """The eigenvalues in row 0 and the eigenvectors below: eigh's one node, whose vjp takes
    the gradients of both at once (complex128 for a Hermitian a, the values' imaginary
    parts 0)."""
    a = _square("eigh", a, complex_ok=True)
    if UPLO not in ("L", "U"):
        raise ValueError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    n = a.shape[-1]
    return _node("eigh", _eigh_packed, eigh_lists(a.data, a.shape, UPLO),
                 a.shape[:-2] + (n + 1, n), (a,), _eigh_vjps, {"UPLO": UPLO}, a.dtype)


_RULES["eigh"] = _Kernel("eigh_lists", lambda shapes, attrs, shape: (shapes[0], attrs["UPLO"]))


def _eigh_vjp(g, out, a):
    w, v = real(out[..., 0, :]), out[..., 1:, :]
    gw, gv = real(g[..., 0, :]), g[..., 1:, :]  # (w is real: only real(gw) moves the loss)
    n = a.shape[-1]
    gaps = expand_dims(w, -2) - expand_dims(w, -1)  # [i][j] = w[j] - w[i]
    # Eigenvalues within rounding of each other (n ulps of the largest) count as equal.
    largest = abs(w).max(-1, keepdims=True).reshape(w.shape[:-1] + (1, 1))
    tied = less_equal(abs(gaps), (n * sys.float_info.epsilon) * largest)
    f = where(tied, 0.0, 1.0 / where(tied, 1.0, gaps))
    middle = expand_dims(gw, -1) * eye(n) + f * (_mT(v) @ gv)
    full = conj(v) @ middle @ _mT(v)  # (conj, and real below: a Hermitian a's only)
    below = tril(ones((n, n)), -1) if out.attrs["UPLO"] == "L" else triu(ones((n, n)), 1)
    return real(full) * eye(n) + (full + conj(_mT(full))) * below


_eigh_vjps = (_eigh_vjp,)


def eig(a):
    """(eigenvalues, eigenvectors) of each square matrix, real or complex, as
    numpy.linalg.eig: the eigenvectors are the columns, each of unit length with its largest
    entry real and positive (NumPy's are the same up to a phase). Both are complex128 always
    (as JAX's and torch's; NumPy gives float64 where every eigenvalue is real). For a real
    matrix, complex eigenvalues come in conjugate pairs, the positive imaginary part first.

    The gradient (distinct eigenvalues) is HIPS autograd's, with JAX's convention (5h):
    inv(V^T) (diag(gw) + F * (V^T gV) - F * (V^T conj(V) diag(re(V^T gV)))) V^T, F[i][j] =
    1 / (w[j] - w[i]) off the diagonal; the last term keeps each vector of unit length.

    >>> w, v = eig(Tensor([[0.0, -1.0], [1.0, 0.0]]))
    >>> [complex(round(e.real, 12), round(e.imag, 12)) for e in w.tolist()]
    [1j, -1j]
    """
    a = _square("eig", a, complex_ok=True)
    if a.dtype is float64:
        a = _astype(a, complex128)  # a real matrix gets the real part of the gradient
    n = a.shape[-1]
    both = _node("eig", _eig_packed, eig_lists(a.data, a.shape), a.shape[:-2] + (n + 1, n),
                 (a,), _eig_vjps, _NO_ATTRS, complex128)  # row 0 the values, then V
    return both[..., 0, :], both[..., 1:, :]


def _eig_packed(a):
    return eig(a)[0].inputs[0]


_RULES["eig"] = _Kernel("eig_lists", lambda shapes, attrs, shape: (shapes[0],))


def _eig_vjp(g, out, a):
    w, v = out[..., 0, :], out[..., 1:, :]
    gw, gv = g[..., 0, :], g[..., 1:, :]
    n = a.shape[-1]
    diagonal = eye(n)
    gaps = expand_dims(w, -2) - expand_dims(w, -1)  # [i][j] = w[j] - w[i]
    f = where(diagonal, 0.0, 1.0 / where(diagonal, 1.0, gaps))
    vt = _mT(v)
    projected = vt @ gv
    unit = f * ((vt @ conj(v)) @ (real(projected) * diagonal))  # the vectors' unit length
    middle = expand_dims(gw, -1) * diagonal + f * projected - unit
    return inv(vt) @ middle @ vt


_eig_vjps = (_eig_vjp,)


def eigvals(a):
    """The eigenvalues of each square matrix: eig's first result (complex128)."""
    return eig(a)[0]


def eigvalsh(a, UPLO="L"):
    """The eigenvalues of each symmetric matrix, ascending: eigh's first result."""
    return eigh(a, UPLO)[0]


def svd(a, full_matrices=True, compute_uv=True):
    """(u, s, vh) with a = u @ diag(s) @ vh for each matrix, as numpy.linalg.svd: s the
    singular values, descending; u and vh with orthonormal columns and rows (u square, m x
    m, when full_matrices; else m x k, k = min(m, n)). With compute_uv=False, s alone.

    Made of eigh, so that its gradient (and its second derivatives) are eigh's: for m >= n,
    the symmetric [[0, a], [a^T, 0]] has the eigenvalues +-s (and m - n zeros), with the
    eigenvectors [u; v] / sqrt(2) for +s (a wide matrix is done as its transpose). Its
    eigenvalues are exact to about 1e-16 of the largest, as LAPACK's singular values; a
    zero singular value has no unique u and v (they mix with the zeros), nor a derivative.
    Each column of v has a positive sum with the weights 1 / (k + pi), k its row (any SVD
    may flip a pair of columns of u and v; LAPACK's signs are its own).

    A complex a: a = u @ diag(s) @ vh with u, vh unitary (complex128), s real, from the
    Hermitian [[0, a], [a^H, 0]]; that weighted sum of each column of v is real and positive
    (LAPACK's phases are its own: a pair of columns of u and v may share any phase). The
    gradient is eigh's, right for what does not depend on those phases, as JAX's.

    >>> u, s, vh = svd(Tensor([[3, 0], [0, -4]]))
    >>> [f"{e:.12f}" for e in s.tolist()]
    ['4.000000000000', '3.000000000000']
    """
    a = _as_num(a, "svd")
    if a.ndim < 2:
        raise ValueError(f"svd: needs matrices in the last two axes, got shape {a.shape}")
    m, n = a.shape[-2:]
    if m < n:  # a^T = u' s vh' gives a = vh'^T s u'^T
        result = svd(_mT(a), full_matrices, compute_uv)
        return result if not compute_uv else (_mT(result[2]), result[1], _mT(result[0]))
    largest = stop_gradient(abs(a).max((-2, -1), keepdims=True)) if a.size else ones((1, 1))
    scale = where(equal(largest, 0.0), 1.0, largest)  # a / scale: no overflow, no underflow
    scaled = a / scale
    both = concatenate([concatenate([zeros(a.shape[:-2] + (m, m)), scaled], -1),
                        concatenate([conj(_mT(scaled)), zeros(a.shape[:-2] + (n, n))], -1)], -2)
    w, q = eigh(both)
    s = abs(flip(w[..., m:], -1)) * scale[..., 0]  # the n largest, descending
    if not compute_uv:
        return s
    u, v = (flip(part, -1) * math.sqrt(2.0) for part in (q[..., :m, m:], q[..., m:, m:]))
    signs = _svd_signs(v)
    u, v = u * signs, v * signs
    if full_matrices and m > n:  # complete u: the eigenvectors of I - u u^H of eigenvalue 1
        u = concatenate([u, eigh(eye(m) - u @ conj(_mT(u)))[1][..., n:]], -1)
    return u, s, conj(_mT(v))


def _svd_signs(v):
    """The sign (a phase, for complex v) that makes each column of v have a real positive
    sum with the weights 1 / (k + pi), k its row. A rule on the largest entry would flip
    between entries of equal size, which integer matrices make often ((1, 1) / sqrt(2)); no
    simple matrix makes this sum 0. No gradient passes through the choice."""
    weights = Tensor([1.0 / (k + math.pi) for k in range(v.shape[-2])]).reshape((-1, 1))
    total = (v * weights).sum(-2, keepdims=True)
    if v.dtype is not complex128:
        return stop_gradient(where(less(total, 0.0), -1.0, 1.0))
    size = abs(total)
    return stop_gradient(where(equal(size, 0.0), 1.0, conj(total) / where(equal(size, 0.0),
                                                                         1.0, size)))


def pinv(a, rcond=1e-15):
    """The pseudo-inverse of each matrix, as numpy.linalg.pinv: v diag(1/s) u^T from svd,
    with the singular values below rcond times the largest taken as 0."""
    u, s, vh = svd(a, full_matrices=False)
    kept = greater(s, rcond * s.max(-1, keepdims=True))
    inverse = where(kept, 1.0 / where(kept, s, 1.0), 0.0)
    return conj(_mT(vh)) @ (expand_dims(inverse, -1) * conj(_mT(u)))  # (a complex a's: ^H)


def norm(x, ord=None, axis=None, keepdims=False):
    """A vector or matrix norm, as numpy.linalg.norm (complex input: the norm of |x|, or
    for ord 2, -2 and "nuc" of a matrix, from its singular values).

    axis None: x flattened with ord None (the 2-norm), else x must be 1-D (a vector norm) or
    2-D (a matrix norm). axis an int: vector norms along it; a pair: matrix norms over it.
    Vector ord: None or 2 (sqrt of the sum of squares), 1, inf (the largest |x|), -inf, 0
    (the number of nonzeros, no gradient), or any other number p (sum |x|**p)**(1/p).
    Matrix ord: None or "fro", "nuc" (the sum of the singular values), 1 and -1 (the
    largest and smallest column sum of |x|), inf and -inf (row sums), 2 and -2 (the largest
    and smallest singular value, from svd).

    The gradient of a norm at zero is 0, as PyTorch (where no derivative exists); so is that of
    a p-norm with respect to an element that is 0.

    >>> norm(Tensor([3, 4])).item()
    5.0
    """
    op = "norm"
    x = _as_num(x, op)
    if x.dtype is complex128 and not (ord in (2, -2, "nuc") and (
            axis is None and x.ndim == 2 or isinstance(axis, (tuple, list)) and len(axis) == 2)):
        x = abs(x)  # a norm of |x|, unless it needs singular values (those of x)
    if not (ord is None or isinstance(ord, (str, numbers.Real))):
        raise TypeError(f"norm: ord must be None, a number, inf, 'fro' or 'nuc', got "
                        f"{ord!r:.60} ({type(ord).__name__})")
    if axis is None:
        if ord is None:
            out = _two_norm(x.reshape(-1), 0)
            return out.reshape((1,) * x.ndim) if keepdims else out
        if x.ndim not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} without an axis needs a 1-D or 2-D tensor, "
                             f"got shape {x.shape}")
        axis = tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    axes = tuple(_normalize_axis(op, a, x.ndim) for a in axes)
    if len(axes) == 1:
        out = _vector_norm(x, ord, axes[0])
    elif len(axes) == 2 and axes[0] != axes[1]:
        out = _matrix_norm(x, ord, axes)
    else:
        raise ValueError(f"norm: axis must be one axis or two different ones, got {axis!r}")
    return expand_dims(out, sorted(axes)) if keepdims else out


def _where_zero(s, f):
    """f(s), but 0 where s is 0, with a gradient of 0 there (and nowhere a nan from f's
    derivative at 0): the double where of JAX's FAQ."""
    zero = equal(s, 0.0)
    return where(zero, 0.0, f(where(zero, 1.0, s)))


def _two_norm(x, axis):
    return _where_zero((x * x).sum(axis), sqrt)


def _vector_norm(x, ord, axis):
    if ord is None or ord == 2:
        return _two_norm(x, axis)
    if isinstance(ord, str) or not isinstance(ord, numbers.Real):
        raise ValueError(f"norm: ord={ord!r} is no vector norm (None, a number, inf, -inf)")
    if ord == inf:
        return abs(x).max(axis)
    if ord == -inf:
        return abs(x).min(axis)
    if ord == 0:
        return stop_gradient(greater(abs(x), 0.0).sum(axis))
    if ord == 1:
        return abs(x).sum(axis)
    p = _scalar("norm", "ord", ord)
    if p < 0.0:  # a zero element makes the norm 0 (1 / inf): 0, with a gradient of 0
        if x.shape[axis] == 0:
            return ((abs(x) ** p).sum(axis)) ** (1.0 / p)  # inf, as NumPy
        has_zero = equal(abs(x).min(axis, keepdims=True), 0.0)
        safe = where(has_zero, 1.0, abs(x))
        return where(squeeze(has_zero, axis), 0.0, ((safe ** p).sum(axis)) ** (1.0 / p))
    powers = _where_zero(abs(x), lambda v: v ** p)  # with 0, not nan, at 0 for p < 1
    return _where_zero(powers.sum(axis), lambda s: s ** (1.0 / p))


def _matrix_norm(x, ord, axes):
    rows, columns = axes
    if ord is None or ord == "fro":
        return _two_norm(x, axes)
    if ord in (1, -1, inf, -inf) and not isinstance(ord, bool):
        summed, over = (rows, columns) if ord in (1, -1) else (columns, rows)
        sums = abs(x).sum(summed, keepdims=True)
        pick = (max if ord > 0 else min)(sums, over, keepdims=True)
        return squeeze(pick, axes)
    if ord in (2, -2, "nuc"):
        values = svd(moveaxis(x, axes, (-2, -1)), compute_uv=False)  # descending
        if ord == "nuc":
            return values.sum(-1)
        return values[..., 0] if ord == 2 else values[..., -1]
    raise ValueError(f"norm: ord={ord!r} is no matrix norm (None, 'fro', 'nuc', 1, -1, 2, "
                     f"-2, inf, -inf)")


class _Linalg(SimpleNamespace):
    """rax.linalg, as numpy.linalg: inv, solve, det, slogdet, cholesky, eigh, eigvalsh, svd,
    pinv, norm and LinAlgError."""

    def __repr__(self):
        return "rax.linalg"


linalg = _Linalg(inv=inv, solve=solve, det=det, slogdet=slogdet, cholesky=cholesky, eigh=eigh,
                 eigvalsh=eigvalsh, svd=svd, pinv=pinv, norm=norm, LinAlgError=LinAlgError,
                 eig=eig, eigvals=eigvals)


# ---- 5g. The rest of NumPy's vocabulary ----------------------------------------------------
#
# NumPy's other names for rax's ops (numpy.absolute is numpy.abs too), and small functions
# made of rax's ops, so that NumPy code translates name for name, gradients included.

absolute = fabs = abs  # fabs and abs agree on real input
negative, subtract, multiply, power, remainder = neg, sub, mul, pow, mod
divide = true_divide = div


def array(obj):
    """Nested lists (or tuples) of numbers and tensors as one tensor, as numpy.array: the
    tensors inside are stacked, and the gradient goes back to each. (Tensor(obj) refuses
    tensors inside: it makes a leaf, which no gradient would leave.) A tensor is returned as
    it is: tensors never change, so there is nothing to copy.

    >>> x = Tensor(2.0)
    >>> array([x, x * 3.0, 1.0]).tolist()
    [2.0, 6.0, 1.0]
    """
    if isinstance(obj, (list, tuple)) and _holds_tensor(obj):
        return stack([array(item) for item in obj])
    return obj if isinstance(obj, Tensor) else Tensor(obj)


def _holds_tensor(obj):
    """Whether obj is a tensor or nested lists with one inside (looked for level by level,
    as deep as a tensor's axes can go)."""
    level = [obj]
    for _ in range(MAX_NDIM + 1):
        if builtins.any(isinstance(v, Tensor) for v in level):
            return True
        level = [v for item in level if isinstance(item, (list, tuple)) for v in item]
    return False


def isnan(x):
    """True where x is nan (numpy.isnan)."""
    x = _as_num(x, "isnan")
    return not_equal(x, x)


def isinf(x):
    """True where x is inf or -inf (numpy.isinf)."""
    return equal(abs(_as_num(x, "isinf")), inf)


def isfinite(x):
    """True where x is neither inf, -inf nor nan (numpy.isfinite)."""
    x = _as_num(x, "isfinite")
    return equal(x - x, 0.0)  # inf - inf and nan - nan are nan


def signbit(x):
    """True where the sign bit of x is set: negative numbers, -0.0, -inf (numpy.signbit).

    >>> signbit(Tensor([-1.0, -0.0, 0.0, 2.0]))
    Tensor([True, True, False, False], op='signbit')
    """
    x = _as_tensor(x, "signbit")
    return _node("signbit", signbit, _SIGNBIT((x.data,), x.ndim), x.shape, (x,), (None,),
                 _NO_ATTRS, bool_)


_SIGNBIT = _RULES["signbit"] = _Elementwise("(copysign(1.0, {0}) < 0.0)", rows="_signbit_rows")


def nonzero(x):
    """The indices of the true (nonzero) elements, one float tensor per axis, as
    numpy.nonzero (rax has no integer dtype). The number of them depends on x's values, so
    in a traced function x may not depend on the arguments (use rax.where there).

    >>> nonzero(Tensor([[0.0, 3.0], [4.0, 0.0]]))
    (Tensor([0.0, 1.0]), Tensor([1.0, 0.0]))
    """
    x = _as_any(x, "nonzero")
    if x.ndim == 0:
        raise ValueError("nonzero: a 0-d tensor has no axes to give indices of; use "
                         "atleast_1d(x) first (as NumPy 2)")
    _check_readable(x, "nonzero() (its length depends on the values)")
    where_true = [i for i, v in enumerate(_flat(x.data, x.ndim)) if v]
    indices = []
    for axis in range(x.ndim):
        inner = math.prod(x.shape[axis + 1:])
        indices.append(_leaf([float(i // inner % x.shape[axis]) for i in where_true],
                             (len(where_true),)))
    return tuple(indices)


def argwhere(x):
    """The indices of the true (nonzero) elements as the rows of one (N, x.ndim) tensor, as
    numpy.argwhere."""
    x = _as_any(x, "argwhere")
    if x.ndim == 0:
        return _leaf([[]] if x.item() else [], (1, 0) if x.item() else (0, 0))
    return stack(nonzero(x), axis=1)


def flatnonzero(x):
    """The indices of the true (nonzero) elements of x flattened, as numpy.flatnonzero."""
    return nonzero(ravel(_as_any(x, "flatnonzero")))[0]


def count_nonzero(x, axis=None, keepdims=False):
    """How many elements are true (nonzero) over `axis`, as a float tensor (numpy's int)."""
    return sum(_as_bools(x, "count_nonzero"), axis, keepdims)


def fmax(x, y):
    """The larger of x and y, ignoring a nan (as numpy.fmax; maximum propagates it). The
    gradient goes to the one chosen: to x at a tie (as torch.fmax; maximum splits it)."""
    return where(maximum(greater_equal(x, y), isnan(y)), x, y)


def fmin(x, y):
    """The smaller of x and y, ignoring a nan (as numpy.fmin); x at a tie."""
    return where(maximum(less_equal(x, y), isnan(y)), x, y)


def degrees(x):
    """Radians to degrees: x * 180 / pi (numpy.degrees, numpy.rad2deg)."""
    return _as_tensor(x, "degrees") * (180.0 / math.pi)


def radians(x):
    """Degrees to radians: x * pi / 180 (numpy.radians, numpy.deg2rad)."""
    return _as_tensor(x, "radians") * (math.pi / 180.0)


rad2deg, deg2rad = degrees, radians


def sinc(x):
    """sin(pi x) / (pi x), and 1 at 0, as numpy.sinc.   d/dx = 0 at 0"""
    x = _as_tensor(x, "sinc")
    zero = equal(x, 0.0)
    px = math.pi * where(zero, 1.0, x)
    return where(zero, 1.0, sin(px) / px)


def logaddexp2(x, y):
    """log2(2**x + 2**y), without overflow (as numpy.logaddexp2)."""
    x, y = _as_tensor(x, "logaddexp2"), _as_tensor(y, "logaddexp2")
    return logaddexp(x * _LN2, y * _LN2) * (1.0 / _LN2)


def ravel(x):
    """x as one axis (numpy.ravel; the same as flatten)."""
    return _as_any(x, "ravel").reshape(-1)


def atleast_1d(*tensors):
    """Each tensor with at least one axis (a 0-d one becomes (1,)), as numpy.atleast_1d: one
    tensor for one argument, else a list."""
    return _atleast(tensors, lambda t: t.reshape((1,)) if t.ndim == 0 else t)


def atleast_2d(*tensors):
    """Each tensor with at least two axes: (n,) becomes (1, n), as numpy.atleast_2d."""
    return _atleast(tensors, lambda t: t.reshape((1,) * (2 - t.ndim) + t.shape)
                    if t.ndim < 2 else t)


def atleast_3d(*tensors):
    """Each tensor with at least three axes: (n,) becomes (1, n, 1) and (m, n) becomes
    (m, n, 1), as numpy.atleast_3d."""
    sides = {0: lambda s: (1, 1, 1), 1: lambda s: (1,) + s + (1,), 2: lambda s: s + (1,)}
    return _atleast(tensors, lambda t: t.reshape(sides[t.ndim](t.shape)) if t.ndim < 3 else t)


def _atleast(tensors, reshape):
    out = [reshape(_as_any(t, "atleast")) for t in tensors]
    return out[0] if len(out) == 1 else out


def fliplr(x):
    """x reversed along axis 1 (numpy.fliplr)."""
    return flip(_need_axes("fliplr", x, 2), 1)


def flipud(x):
    """x reversed along axis 0 (numpy.flipud)."""
    return flip(_need_axes("flipud", x, 1), 0)


def _need_axes(op, x, n):
    x = _as_any(x, op)
    if x.ndim < n:
        raise ValueError(f"{op}: needs at least {n} axes, got shape {x.shape}")
    return x


def rot90(x, k=1, axes=(0, 1)):
    """x rotated by 90 degrees k times in the plane of `axes`, from the first axis towards
    the second, as numpy.rot90."""
    x = _need_axes("rot90", x, 2)
    a, b = (_normalize_axis("rot90", v, x.ndim) for v in axes)
    if a == b:
        raise ValueError(f"rot90: the axes {axes} must differ")
    k = _index("rot90", "k", k) % 4
    order = list(range(x.ndim))
    order[a], order[b] = b, a
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, a), b)
    return transpose(flip(x, b), order) if k == 1 else flip(transpose(x, order), b)


def append(x, values, axis=None):
    """x with values added at the end of `axis`, or both flattened when axis is None, as
    numpy.append."""
    x, values = _as_any(x, "append"), _as_any(values, "append")
    if axis is None:
        return concatenate([x.reshape(-1), values.reshape(-1)])
    return concatenate([x, values], axis)


def array_split(x, sections, axis=0):
    """split, but an int number of sections need not divide the axis: the first
    n % sections parts have one element more, as numpy.array_split."""
    x = _as_any(x, "array_split")
    if isinstance(sections, numbers.Integral):
        sections = _int("array_split", "sections", sections, 1)
        n = x.shape[_normalize_axis("array_split", axis, x.ndim)]
        if sections > n + 10_000:  # NumPy would make them all, and run out of memory
            raise ValueError(f"array_split: {sections} sections of an axis of {n} would be "
                             f"{sections - n} empty tensors")
        size, extra = divmod(n, sections)
        sections = list(itertools.accumulate(size + (i < extra) for i in range(sections - 1)))
    return split(x, sections, axis)


def hsplit(x, sections):
    """split along axis 1 (axis 0 of a 1-D x), as numpy.hsplit."""
    x = _need_axes("hsplit", x, 1)
    return split(x, sections, 1 if x.ndim > 1 else 0)


def vsplit(x, sections):
    """split along axis 0 of an x with at least 2 axes, as numpy.vsplit."""
    return split(_need_axes("vsplit", x, 2), sections, 0)


def dsplit(x, sections):
    """split along axis 2 of an x with at least 3 axes, as numpy.dsplit."""
    return split(_need_axes("dsplit", x, 3), sections, 2)


def column_stack(tensors):
    """1-D tensors as columns (and numbers as 1 x 1), 2-D ones as they are, joined along axis
    1 (numpy.column_stack)."""
    tensors = [_as_any(t, "column_stack") for t in _as_sequence("column_stack", tensors)]
    return concatenate([t.reshape(t.shape + (1,) * (2 - t.ndim)) if t.ndim < 2 else t
                        for t in tensors], 1)


row_stack = vstack


def diff(x, n=1, axis=-1):
    """The n-th difference along `axis`: x[1:] - x[:-1], n times, as numpy.diff."""
    x = _need_axes("diff", x, 1)
    axis = _normalize_axis("diff", axis, x.ndim)
    lead = (slice(None),) * axis
    for _ in range(_min(_int("diff", "n", n, 0), x.shape[axis])):  # then it is empty
        x = x[lead + (slice(1, None),)] - x[lead + (slice(None, -1),)]
    return x


def kron(a, b):
    """The Kronecker product: every element of a times all of b, as blocks, as numpy.kron
    (the shorter shape padded with leading 1s)."""
    a, b = _as_num(a, "kron"), _as_num(b, "kron")
    n = _max(a.ndim, b.ndim)
    sa, sb = (1,) * (n - a.ndim) + a.shape, (1,) * (n - b.ndim) + b.shape
    left = a.reshape(tuple(v for s in sa for v in (s, 1)))
    right = b.reshape(tuple(v for s in sb for v in (1, s)))
    return (left * right).reshape(tuple(p * q for p, q in zip(sa, sb)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors along axisa of a and axisb of b (both `axis` if
    given), put along axisc of the result, as numpy.cross. A 2-vector counts as a 3-vector
    with z = 0; of two 2-vectors the result is that z component alone, as NumPy's."""
    a, b = _as_tensor(a, "cross"), _as_tensor(b, "cross")
    if axis is not None:
        axisa = axisb = axisc = axis
    for name, value in (("axisa", axisa), ("axisb", axisb), ("axisc", axisc)):
        _index("cross", name, value)
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    if a.shape[-1:] not in ((2,), (3,)) or b.shape[-1:] not in ((2,), (3,)):
        raise ValueError(f"cross: needs 2- or 3-vectors along the axes, got shapes {a.shape} "
                         f"and {b.shape} (axis last)")
    planar = a.shape[-1] == b.shape[-1] == 2
    a0, a1, a2 = (a[..., i] if i < a.shape[-1] else zeros_like(a[..., 0]) for i in range(3))
    b0, b1, b2 = (b[..., i] if i < b.shape[-1] else zeros_like(b[..., 0]) for i in range(3))
    if planar:
        return a0 * b1 - a1 * b0
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)
    return moveaxis(c, -1, axisc)


def linspace(start, stop, num=50, endpoint=True):
    """num evenly spaced values from start to stop (stop included when endpoint), as
    numpy.linspace; start and stop may be tensors (broadcast together, the values along a
    new axis 0), and get their gradients.

    >>> linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    start, stop = _as_tensor(start, "linspace"), _as_tensor(stop, "linspace")
    num = _int("linspace", "num", num, 0)
    intervals = (num - 1) if endpoint else num
    shape = _broadcast_shapes("linspace", start.shape, stop.shape)
    counts = arange(num).reshape((num,) + (1,) * len(shape))
    values = counts * ((stop - start) / float(_max(intervals, 1))) + start  # NumPy's order
    if endpoint and num > 1:  # exactly stop at the end, as NumPy
        last = Tensor([float(k == num - 1) for k in range(num)]).reshape(counts.shape)
        values = where(last, stop, values)
    return values


def select(condlist, choicelist, default=0.0):
    """choicelist[i] where condlist[i] is the first true condition, else default, as
    numpy.select."""
    conditions = _as_sequence("select", condlist)
    choices = _as_sequence("select", choicelist)
    if len(conditions) != len(choices):
        raise ValueError(f"select: {len(conditions)} conditions but {len(choices)} choices")
    out = _as_tensor(default, "select")
    for condition, choice in reversed(list(zip(conditions, choices))):
        out = where(condition, choice, out)
    return out


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """x with nan, inf and -inf replaced by numbers (by default 0.0 and the largest and
    smallest floats), as numpy.nan_to_num; the replaced elements get no gradient."""
    x = _as_tensor(x, "nan_to_num")
    big = sys.float_info.max
    x = where(equal(x, x), x, nan)
    x = where(equal(x, inf), big if posinf is None else posinf, x)
    return where(equal(x, -inf), -big if neginf is None else neginf, x)


def gradient(f, *spacing, axis=None, edge_order=1):
    """The derivative of sampled values along each axis (all, or `axis`), as numpy.gradient:
    central differences (f[i+1] - f[i-1]) / 2h inside, one-sided ones at the two ends; h is
    1, one number for every axis or one per axis. One axis gives a tensor, several a list.
    (No coordinate arrays, and edge_order 1 only.)"""
    f = _as_tensor(f, "gradient")
    axes = range(f.ndim) if axis is None else (axis,) if isinstance(
        axis, numbers.Integral) else tuple(axis)
    axes = [_normalize_axis("gradient", a, f.ndim) for a in axes]
    if edge_order != 1 or len(spacing) not in (0, 1, len(axes)) or not all(
            isinstance(h, numbers.Real) for h in spacing):
        raise ValueError("gradient: give edge_order=1 and no spacing, one number or one per "
                         f"axis, got {spacing!r} and edge_order={edge_order!r}")
    steps = [_scalar("gradient", "a spacing", h) for h in spacing] or [1.0]
    steps = steps * len(axes) if len(steps) == 1 else steps
    out = []
    for a, h in zip(axes, steps):
        if f.shape[a] < 2:
            raise ValueError(f"gradient: axis {a} of shape {f.shape} needs at least 2 samples")
        at = lambda *bounds: f[(slice(None),) * a + (slice(*bounds),)]  # noqa: E731
        out.append(concatenate([(at(1, 2) - at(0, 1)) / h, (at(2, None) - at(None, -2))
                                / (2.0 * h), (at(-1, None) - at(-2, -1)) / h], a))
    return out[0] if len(out) == 1 else out


def rollaxis(x, axis, start=0):
    """axis moved to before position start, as numpy.rollaxis (moveaxis says it plainer)."""
    x = _as_any(x, "rollaxis")
    axis = _normalize_axis("rollaxis", axis, x.ndim)
    start = start + x.ndim if start < 0 else start
    if not 0 <= start <= x.ndim:
        raise AxisError(f"rollaxis: start {start} is out of range for {x.ndim} axes")
    if axis < start:
        start -= 1
    order = [a for a in range(x.ndim) if a != axis]
    order.insert(start, axis)
    return _arranged(x, order)


def ptp(x, axis=None, keepdims=False):
    """The range, max - min, over `axis` (numpy.ptp, "peak to peak"); its gradient is max's
    minus min's."""
    x = _as_tensor(x, "ptp")
    return max(x, axis, keepdims) - min(x, axis, keepdims)


def fftshift(x, axes=None):
    """x rolled by n // 2 along each of `axes` (None: all), as numpy.fft.fftshift: the zero
    frequency moved to the middle (rax.fft.fftshift)."""
    x = _as_any(x, "fftshift")
    axes = range(x.ndim) if axes is None else _axes_list(axes, "fftshift")
    axes = [_normalize_axis("fftshift", a, x.ndim) for a in axes]
    return roll(x, [x.shape[a] // 2 for a in axes], axes) if axes else x


def ifftshift(x, axes=None):
    """The inverse of fftshift: x rolled by -(n // 2) along each of `axes` (rax.fft)."""
    x = _as_any(x, "ifftshift")
    axes = range(x.ndim) if axes is None else _axes_list(axes, "ifftshift")
    axes = [_normalize_axis("ifftshift", a, x.ndim) for a in axes]
    return roll(x, [-(x.shape[a] // 2) for a in axes], axes) if axes else x


def ravel_pytree(tree):
    """(flat, unravel): every leaf of the tree (tensors, numbers) as one 1-D tensor, in
    tree_leaves order, and the function that rebuilds the tree from such a vector, as
    jax.flatten_util.ravel_pytree (rax.flatten_util). Both ways are ops: gradients flow.

    >>> flat, unravel = ravel_pytree({"b": Tensor([1.0]), "w": Tensor([[2.0, 3.0]])})
    >>> flat.tolist(), unravel(flat * 2.0)["w"].tolist()
    ([1.0, 2.0, 3.0], [[4.0, 6.0]])
    """
    leaves = [_as_any(leaf, "ravel_pytree") for leaf in tree_leaves(tree)]
    shapes = [leaf.shape for leaf in leaves]
    dtypes = [leaf.dtype for leaf in leaves]  # unravel gives bools back as bools, as JAX's
    sizes = [math.prod(shape) for shape in shapes]
    flat = concatenate([_as_tensor(leaf, "ravel_pytree").reshape(-1) for leaf in leaves]) \
        if leaves else zeros((0,))

    def unravel(vector):
        vector = _as_tensor(vector, "unravel")
        if vector.shape != (_sum(sizes),):
            raise ValueError(f"unravel: expected a 1-D tensor of {_sum(sizes)} elements, got "
                             f"shape {vector.shape}")
        bounds = list(itertools.accumulate(sizes, initial=0))
        parts = [astype(vector[a:b].reshape(shape), dtype)
                 for a, b, shape, dtype in zip(bounds, bounds[1:], shapes, dtypes)]
        return _rebuild(tree, iter(parts))

    return flat, unravel


class _Namespace(SimpleNamespace):
    """A namespace of rax's functions named as another library's (rax.fft, rax.flatten_util)."""

    def __init__(self, name, **functions):
        super().__init__(**functions)
        self._name = name

    def __repr__(self):
        return f"rax.{self._name}"


flatten_util = _Namespace("flatten_util", ravel_pytree=ravel_pytree)


def msort(x):
    """x sorted along axis 0 (numpy.msort, of NumPy 1)."""
    return sort(x, 0)


def partition(x, kth, axis=-1):
    """x with each kth element where sorting would put it, smaller ones before, larger ones
    after, as numpy.partition: here fully sorted, which is one such arrangement."""
    return sort(x, axis)


def _all(x, axis=None, keepdims=False, *, out=None):
    """True where every element over `axis` is true (nonzero; nan counts), as numpy.all
    (rax.all, and the method t.all())."""
    _no_dim("all", None, None, out)
    return _reduce(_all, _as_bools(x, "all"), axis, keepdims, builtins.all, (None,), bool_)


def _any(x, axis=None, keepdims=False, *, out=None):
    """True where some element over `axis` is true (nonzero), as numpy.any (rax.any)."""
    _no_dim("any", None, None, out)
    return _reduce(_any, _as_bools(x, "any"), axis, keepdims, builtins.any, (None,), bool_)


_all.__name__, _any.__name__ = "all", "any"
_RULES["all"], _RULES["any"] = _reduction("_every"), _reduction("_some")
_every, _some = builtins.all, builtins.any  # the kernels' names for Python's all and any


def isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """True where |a - b| <= atol + rtol |b| (as numpy.isclose; inf only close to itself)."""
    a, b = _as_num(a, "isclose"), _as_num(b, "isclose")
    near = less_equal(abs(a - b), atol + rtol * abs(b)) & isfinite(a) & isfinite(b)
    close = near | equal(a, b)  # infinities are close to themselves only
    return close | isnan(a) & isnan(b) if equal_nan else close


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Whether every element of a is close to b's (isclose), as numpy.allclose: a bool."""
    return bool(_all(isclose(a, b, rtol, atol, equal_nan)))


class _Concatenator:
    """numpy.r_ and numpy.c_ for tensors and numbers: r_[a, b, 3.0] joins them along axis 0,
    each made at least 1-D, and a slice 1:10:2 is arange(1, 10, 2); c_[a, b] joins along
    the last axis, 1-D ones as columns. (No string directives.)"""

    def __init__(self, name, columns):
        self.name, self.columns = name, columns

    def __getitem__(self, items):
        items = items if isinstance(items, tuple) else (items,)
        if builtins.any(isinstance(v, str) or (isinstance(v, slice) and (
                self.columns or isinstance(v.step, complex))) for v in items):
            raise TypeError(f"{self.name}: string directives, complex steps and c_'s slices "
                            f"are not supported; join tensors, numbers and r_'s slices")
        tensors = [arange(v.start or 0, v.stop, 1 if v.step is None else v.step)
                   if isinstance(v, slice) else _as_tensor(v, self.name) for v in items]
        tensors = [t.reshape((1,)) if t.ndim == 0 else t for t in tensors]
        if self.columns:
            return concatenate([t.reshape(t.shape + (1,)) if t.ndim == 1 else t
                                for t in tensors], -1)
        return concatenate(tensors, 0)

    def __repr__(self):
        return f"rax.{self.name}"


r_, c_ = _Concatenator("r_", False), _Concatenator("c_", True)

__all__ += [
    "absolute", "fabs", "negative", "subtract", "multiply", "divide", "true_divide", "power",
    "remainder", "array", "not_equal", "fmax",
    "fmin", "degrees", "radians", "rad2deg", "deg2rad", "sinc", "logaddexp2", "ravel",
    "atleast_1d", "atleast_2d", "atleast_3d", "fliplr", "flipud", "rot90", "append",
    "array_split", "hsplit", "vsplit", "dsplit", "column_stack", "row_stack", "diff", "kron",
    "cross", "linspace", "select", "nan_to_num", "rollaxis", "partition", "isclose",
    "allclose", "r_", "c_", "isnan", "isinf", "isfinite", "real_if_close", "gradient",
    "msort", "ptp", "fft", "flatten_util"]


# ---- 5h. Complex numbers -------------------------------------------------------------------
#
# A complex128 tensor holds Python complex numbers; the ops that have a complex meaning run
# cmath's functions (appendix B makes them total, with C99's infinities and nans), and those
# that need an order (<, max, sort, relu, floor) refuse complex with a TypeError.
#
# Gradients, as JAX and HIPS autograd. A complex number z = x + iy is two real numbers, and
# the cotangent of z is the complex number g = dL/dx - i dL/dy for a real loss L: so grad of
# |z|**2 = x**2 + y**2 at 1+2j is 2 - 4j, that is 2 conj(z). PyTorch's .grad is the
# conjugate, dL/dx + i dL/dy = 2 + 4j (its direction of steepest ascent, so that z - lr * grad
# descends); JAX's is the conjugate of PyTorch's, and both are right under their own
# definition. With JAX's, a vjp rule pairs g with dz bilinearly, Re(g dz) = dL: for a
# holomorphic f (exp, log, mul, matmul, the whole of chapter 2) the rule is the real one,
# g * f'(z), with no conjugate anywhere, and grad(f, holomorphic=True) is f'(z). conj appears
# in the rules of the ops that are not holomorphic: conj's is conj(g), abs's is
# g conj(z) / |z|, real's is g + 0i, imag's is -i g; and where a real tensor is promoted to
# complex (the astype node of _promoted) the real tensor gets the real part of g. grad of a
# complex-valued f is a TypeError unless holomorphic=True (as JAX): a complex loss has no
# gradient of its own. For PyTorch's gradient, take conj of rax's.

def _promoted(op, x, y, rule):
    """x and y as tensors of one dtype for an op of arithmetic, its rule for that dtype and
    the output dtype (None: float64): complex128 if either is complex and the op has a
    complex twin, as NumPy promotes; else float64 (see _as_tensor)."""
    x = _constant(x) if type(x) is float else x  # (a speed device: W4 eager, 1.8% of Ir)
    y = _constant(y) if type(y) is float else y
    if type(x) is Tensor and x.dtype is float64 and type(y) is Tensor and y.dtype is float64:
        return x, y, rule, None  # (the common case, as 2.0 * x, tested first)
    if rule.on_complex is None:
        return _as_tensor(x, op), _as_tensor(y, op), rule, None
    x, y = _as_num(x, op), _as_num(y, op)
    if x.dtype is float64 and y.dtype is float64:
        return x, y, rule, None
    x, y = (t if t.dtype is complex128 else _astype(t, complex128) for t in (x, y))
    return x, y, rule.on_complex, rule.on_complex.dtype


def _as_num(value, op):
    """value as a float64 or complex128 Tensor, for an op with a complex meaning."""
    value = _as_any(value, op)
    return value if value.dtype is not bool_ else _astype(value, float64)


def _no_complex(op, what="complex128 input"):
    """The TypeError of an op that has no complex meaning in rax."""
    raise TypeError(f"{op}: {what}: complex numbers have no order, and {op} has no complex "
                    f"meaning in rax (NumPy orders complex numbers lexicographically, by real "
                    f"part and then imaginary part; rax refuses rather than guess): take "
                    f"rax.real, rax.imag or rax.abs first")


def _loss_seed(loss, arguments, holomorphic):
    """The seed of grad's backward pass: 1, of the loss's dtype. A complex loss needs
    holomorphic=True, and then the loss and every argument are complex (as JAX)."""
    if holomorphic:
        for leaf in arguments:
            if leaf.dtype is not complex128:
                raise TypeError(f"grad(holomorphic=True): the arguments must be complex128 (as "
                                f"JAX), got a {leaf.dtype} tensor of shape {leaf.shape}")
        if loss.dtype is not complex128:
            raise TypeError(f"grad(holomorphic=True): f must return a complex128 tensor (as "
                            f"JAX), got {loss.dtype}")
        return _filled(loss.shape, 1.0 + 0.0j)
    if loss.dtype is complex128:
        raise TypeError("grad: f returned a complex128 tensor: grad is the gradient of a "
                        "real-valued function (as JAX's); pass holomorphic=True for the "
                        "complex derivative of a holomorphic f, or return a real loss, "
                        "such as abs(f) ** 2 or real(f)")
    return _filled(loss.shape, 1.0)


def _seed_of(t, seed):
    """backward's seed as a tensor of t's dtype (a real seed for a complex t is promoted)."""
    seed = _as_num(seed, "backward")
    if seed.dtype is t.dtype or seed.dtype is float64 and t.dtype is not complex128:
        return seed  # (a bool tensor's cotangent is a float one, never used)
    if t.dtype is complex128:
        return _astype(seed, complex128)
    raise TypeError(f"backward: the seed is complex128, but the tensor is {t.dtype}: the "
                    f"cotangent of a real tensor is real")


def _cotangent(contribution, t, op):
    """A vjp rule's contribution to t's gradient as a tensor of t's dtype: a real one for a
    complex t is promoted; a complex one for a real t is the rule's error."""
    contribution = _as_num(contribution, op)
    if contribution.dtype is t.dtype:
        return contribution
    if t.dtype is complex128:
        return _astype(contribution, complex128)
    raise TypeError(f"the vjp rule of {op!r} gave a complex128 cotangent for a real tensor of "
                    f"shape {t.shape}: a real input's cotangent is the real part (chapter 5h)")


def real(x):
    """The real part, as numpy.real (x itself for a real tensor).
    d real(z) = real(dz): the cotangent of z is g + 0i.

    >>> real(Tensor([1 + 2j, -3j]))
    Tensor([1.0, -0.0], op='real')
    """
    x = _as_any(x, "real")
    if x.dtype is not complex128:
        return x
    return _node("real", real, _REAL((x.data,), x.ndim), x.shape, (x,), _real_vjps,
                 _NO_ATTRS, float64)


_REAL = _RULES["real"] = _Elementwise("{0}.real", operator.attrgetter("real"))
_real_vjps = (lambda g, out, x: _complex(g, _filled(g.shape, 0.0)),)


def imag(x):
    """The imaginary part, as numpy.imag (zeros for a real tensor, with no gradient).
    d imag(z) = imag(dz): the cotangent of z is -i g.

    >>> imag(Tensor([1 + 2j, -3j]))
    Tensor([2.0, -3.0], op='imag')
    """
    x = _as_any(x, "imag")
    if x.dtype is not complex128:
        return zeros_like(_as_tensor(x, "imag"))
    return _node("imag", imag, _IMAG((x.data,), x.ndim), x.shape, (x,), _imag_vjps,
                 _NO_ATTRS, float64)


_IMAG = _RULES["imag"] = _Elementwise("{0}.imag", operator.attrgetter("imag"))
_imag_vjps = (lambda g, out, x: _complex(_filled(g.shape, 0.0), -g),)


def conj(x):
    """The complex conjugate, as numpy.conj (x itself for a real tensor).
    d conj(z) = conj(dz): the cotangent of z is conj(g).

    >>> conj(Tensor([1 + 2j]))
    Tensor([(1-2j)], op='conj')
    """
    x = _as_any(x, "conj")
    if x.dtype is not complex128:
        return x
    return _node("conj", conj, _CONJ((x.data,), x.ndim), x.shape, (x,), _conj_vjps,
                 _NO_ATTRS, complex128)


_CONJ = _RULES["conj"] = _Elementwise("{0}.conjugate()", complex.conjugate)
_conj_vjps = (lambda g, out, x: conj(g),)
conjugate = conj


def _complex(x, y):
    """x + iy from two float64 tensors (jax.lax.complex).   The cotangents of x and y are
    real(g) and -imag(g)."""
    x, y = _as_tensor(x, "complex"), _as_tensor(y, "complex")
    return _binary(_complex, x, y, _COMPLEX, _complex_vjps, complex128)


_complex.__name__ = "complex"
_COMPLEX = _RULES["complex"] = _Elementwise("complex({0}, {1})", complex)
_complex_vjps = (lambda g, out, x, y: real(g),
                 lambda g, out, x, y: -imag(g))


def angle(x, deg=False):
    """The angle of each number in the complex plane, in [-pi, pi], as numpy.angle: for
    a real x, 0 for x >= 0 (and +0.0), pi for x < 0 and -0.0. In degrees if deg.
    d angle(z) = imag(dz / z): the cotangent of z is -i g / z (that of a real x is 0).

    >>> angle(Tensor([1j, -1.0])).tolist()
    [1.5707963267948966, 3.141592653589793]
    """
    x = _as_num(x, "angle")
    if x.dtype is float64:
        out = arctan2(zeros_like(x), x)
    else:
        out = _node("angle", angle, _ANGLE((x.data,), x.ndim), x.shape, (x,), _angle_vjps,
                    _NO_ATTRS, float64)
    return out * (180.0 / math.pi) if deg else out


_ANGLE = _RULES["angle"] = _Elementwise("_cangle({0})", "_cangle")
_angle_vjps = (lambda g, out, x: _complex(_filled(g.shape, 0.0), -g) / x,)


def _abs_vjp(g, out, x):
    """abs's rule: g sign(x) for a real x (0 at 0, as PyTorch); g conj(z) / |z| for a
    complex z (0 at 0, as JAX), with |z| read as 1 there, so that the second derivative is
    0 too, not nan."""
    if x.dtype is not complex128:
        return g * (astype(x > 0.0, float64) - (x < 0.0))
    zero = equal(out, 0.0)
    return g * where(zero, 0.0, conj(x) / where(zero, 1.0, out))


def iscomplex(x):
    """True where the imaginary part is nonzero, as numpy.iscomplex (all False for a real x).

    >>> iscomplex(Tensor([1 + 0j, 1j]))
    Tensor([False, True], op='not_equal')
    """
    return not_equal(imag(x), 0.0)


def isreal(x):
    """True where the imaginary part is zero, as numpy.isreal (all True for a real x)."""
    return equal(imag(x), 0.0)


def iscomplexobj(x):
    """Whether x is a complex tensor (or array, or data with a complex number), a Python
    bool, as numpy.iscomplexobj."""
    return _as_any(x, "iscomplexobj").dtype is complex128


def isrealobj(x):
    """Whether x is not complex, as numpy.isrealobj."""
    return not iscomplexobj(x)


def real_if_close(x, tol=100):
    """x's real part if every imaginary part is within tol machine epsilons of 0, else x,
    as numpy.real_if_close."""
    x = _as_any(x, "real_if_close")
    if x.dtype is not complex128:
        return x
    limit = tol * sys.float_info.epsilon if tol > 1 else tol
    return real(x) if builtins.all(_abs(v.imag) < limit for v in _flat(x.data, x.ndim)) else x


__all__ += ["complex128", "real", "imag", "conj", "conjugate", "angle", "iscomplex",
            "isreal", "iscomplexobj", "isrealobj", "real_if_close"]


# ---- 5i. Fourier transforms: rax.fft -------------------------------------------------------
#
# numpy.fft's transforms, with its n, axis, s, axes and norm, as rax.fft.fft and so on. The
# six 1-D transforms are primitives whose kernel is appendix A's FFT, O(n log n) for every n
# (radix 2, and Bluestein's algorithm for other lengths: 4096 points take 2 ms, where the
# O(n**2) sum takes over a second); the n-dimensional ones apply them axis by axis, as NumPy
# does, so their gradients come from the 1-D rules. Each rule is a transform itself, with
# JAX's convention (5h): the DFT matrix F is symmetric, so the rule of fft is fft of g, its
# transpose (not its conjugate transpose), scaled as the forward was, then cropped or
# zero-padded back to the input's length where n padded or cropped it. A real input takes
# the real part (rfft, ihfft); irfft's rule is the conjugate of rfft of g with the bins that
# irfft counts twice (all but 0 and n/2) doubled, as JAX's.

def _fft_primitive(op, x, n, axis, norm):
    """The node of the 1-D transform `op` of x along axis, to n points (see fft)."""
    real_input = op in ("rfft", "ihfft")
    x = _as_num(x, op)
    if real_input and x.dtype is complex128:
        raise TypeError(f"{op}: the input must be real, got complex128 (as numpy.fft.{op}); "
                        f"take fft of complex input")
    if not real_input and x.dtype is float64:
        x = _astype(x, complex128)  # so a real input gets the real part of the gradient
    axis = _normalize_axis(op, axis, x.ndim)
    data, shape = _FFT_KERNELS[op](x.data, x.shape, n, axis, norm)
    if n is None:
        n = 2 * (x.shape[axis] - 1) if op in ("irfft", "hfft") else x.shape[axis]
    attrs = {"n": n, "axis": axis, "norm": "backward" if norm is None else norm}
    dtype = float64 if op in ("irfft", "hfft") else complex128
    return _node(op, _FFT_OPS[op], data, shape, (x,), _FFT_VJPS[op], attrs, dtype)


def _fft(a, n=None, axis=-1, norm=None):
    """The discrete Fourier transform along axis, as numpy.fft.fft: out[k] = sum over j of
    a[j] exp(-2 pi i jk / n), a cropped or zero-padded to n points (None: the axis's side);
    norm "backward" (None) leaves it unscaled, "ortho" scales by 1/sqrt(n), "forward" by 1/n.
    d/da: fft of g, scaled the same, cropped or padded back (F is symmetric).

    >>> fft.fft(Tensor([1.0, 2.0, 3.0, 4.0])).tolist()
    [(10+0j), (-2+2j), (-2+0j), (-2-2j)]
    """
    return _fft_primitive("fft", a, n, axis, norm)


def _ifft(a, n=None, axis=-1, norm=None):
    """The inverse transform, as numpy.fft.ifft: sum over j of a[j] exp(+2 pi i jk / n),
    scaled by 1/n for norm "backward" (None).   d/da: ifft of g, scaled the same."""
    return _fft_primitive("ifft", a, n, axis, norm)


def _rfft(a, n=None, axis=-1, norm=None):
    """The n // 2 + 1 first terms of the fft of real a, as numpy.fft.rfft (the others are
    their conjugates).   d/da: the real part of fft of g zero-padded to n points."""
    return _fft_primitive("rfft", a, n, axis, norm)


def _irfft(a, n=None, axis=-1, norm=None):
    """The n real points (None: 2 (m - 1) for m terms) whose rfft is a, as
    numpy.fft.irfft; the imaginary parts of terms 0 and n/2 are ignored, as NumPy's.
    d/da: conj(rfft of g), scaled as the forward, with the terms counted twice doubled."""
    return _fft_primitive("irfft", a, n, axis, norm)


def _hfft(a, n=None, axis=-1, norm=None):
    """The real fft of the Hermitian signal whose first half is a, as numpy.fft.hfft:
    irfft of conj(a), scaled as a forward transform.   d/da: rfft of g, the twice-counted
    terms doubled."""
    return _fft_primitive("hfft", a, n, axis, norm)


def _ihfft(a, n=None, axis=-1, norm=None):
    """The inverse of hfft for real a, as numpy.fft.ihfft: conj(rfft(a)), scaled as an
    inverse transform.   d/da: the real part of the scaled fft of conj(g) padded to n."""
    return _fft_primitive("ihfft", a, n, axis, norm)


def _cropped_or_padded(g, axis, m):
    """g cropped or zero-padded to m along axis: the transpose of padding or cropping."""
    k = g.shape[axis]
    if k > m:
        return g[(slice(None),) * axis + (slice(0, m),)]
    if k < m:
        zeros_ = full(g.shape[:axis] + (m - k,) + g.shape[axis + 1:], _ZERO_OF[g.dtype])
        return concatenate([g, zeros_], axis)
    return g


_SWAPPED_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _twice_counted(g, out, x, op):
    """The rule of irfft (conjugated) and hfft: rfft of g, scaled as the forward was, times
    1 at term 0 (and n/2 for an even n) and 2 elsewhere, cropped or padded to x's terms."""
    n, axis, norm = out.attrs["n"], out.attrs["axis"], out.attrs["norm"]
    spectrum = _rfft(g, None, axis, _SWAPPED_NORM[norm] if op == "irfft" else norm)
    k = n // 2 + 1
    mask = [1.0] + [2.0] * (k - 1) if n % 2 else [1.0] + [2.0] * (k - 2) + [1.0][:k - 1]
    spectrum = spectrum * Tensor(mask).reshape((k,) + (1,) * (g.ndim - 1 - axis))
    return _cropped_or_padded(conj(spectrum) if op == "irfft" else spectrum, axis, x.shape[axis])


def _fft_rule(g, out, x):
    """The rule of fft and ifft: the same transform of g, cropped or padded back."""
    attrs = out.attrs
    transform = _fft if out.op == "fft" else _ifft
    return _cropped_or_padded(transform(g, None, attrs["axis"], attrs["norm"]), attrs["axis"],
                    x.shape[attrs["axis"]])


def _real_input_rule(g, out, x):
    """The rule of rfft and ihfft: the real part of fft of g (conj(g) for ihfft, whose scale
    is an inverse transform's) zero-padded to n points, cropped or padded back to x's side."""
    n, axis, norm = out.attrs["n"], out.attrs["axis"], out.attrs["norm"]
    if out.op == "ihfft":
        g, norm = conj(g), _SWAPPED_NORM[norm]
    spectrum = _fft(_cropped_or_padded(g, axis, n), None, axis, norm)
    return _cropped_or_padded(real(spectrum), axis, x.shape[axis])


_FFT_OPS = {"fft": _fft, "ifft": _ifft, "rfft": _rfft, "irfft": _irfft, "hfft": _hfft,
            "ihfft": _ihfft}
_FFT_VJPS = {"fft": (_fft_rule,), "ifft": (_fft_rule,), "rfft": (_real_input_rule,),
             "ihfft": (_real_input_rule,),
             "irfft": (lambda g, out, x: _twice_counted(g, out, x, "irfft"),),
             "hfft": (lambda g, out, x: _twice_counted(g, out, x, "hfft"),)}
for _op in _FFT_OPS:
    _FFT_OPS[_op].__name__ = _FFT_OPS[_op].__qualname__ = _op
    _RULES[_op] = _Kernel("fft_kernel_lists", lambda shapes, attrs, shape, op=_op: (
        shapes[0], op, attrs["n"], attrs["axis"], attrs["norm"]))
del _op


def _fftn(a, s=None, axes=None, norm=None):
    """The n-dimensional fft over axes (None: the last len(s) axes, or all), axis axes[i]
    cropped or padded to s[i] points, as numpy.fft.fftn: 1-D ffts, the last axis first."""
    return _transform_axes("fftn", _fft, a, s, axes, norm)


def _ifftn(a, s=None, axes=None, norm=None):
    """The n-dimensional inverse fft, as numpy.fft.ifftn."""
    return _transform_axes("ifftn", _ifft, a, s, axes, norm)


def _transform_axes(op, transform, a, s, axes, norm):
    x = _as_num(a, op)
    _fft_scale(op, norm, 1, False)  # a bad norm is an error even with no axes
    sides, axes = _nd_plan(op, x.shape, s, axes, False)
    for side, axis in reversed(list(zip(sides, axes))):
        x = transform(x, side, axis, norm)
    return x


def _rfftn(a, s=None, axes=None, norm=None):
    """rfft over the last of axes, then fft over the others, as numpy.fft.rfftn."""
    x = _as_num(a, "rfftn")
    sides, axes = _nd_plan("rfftn", x.shape, s, axes, False)
    if not axes:
        raise ValueError("rfftn: at least one axis is needed")
    x = _rfft(x, sides[-1], axes[-1], norm)
    for side, axis in reversed(list(zip(sides[:-1], axes[:-1]))):
        x = _fft(x, side, axis, norm)
    return x


def _irfftn(a, s=None, axes=None, norm=None):
    """ifft over all of axes but the last, then irfft over the last, as numpy.fft.irfftn
    (the last side's default is 2 (m - 1))."""
    x = _as_num(a, "irfftn")
    sides, axes = _nd_plan("irfftn", x.shape, s, axes, True)
    if not axes:
        raise ValueError("irfftn: at least one axis is needed")
    for side, axis in zip(sides[:-1], axes[:-1]):
        x = _ifft(x, side, axis, norm)
    return _irfft(x, sides[-1], axes[-1], norm)


def _two_axes(transform, name):
    def transform2(a, s=None, axes=(-2, -1), norm=None):
        return transform(a, s, axes, norm)
    transform2.__name__ = transform2.__qualname__ = name
    transform2.__doc__ = f"{transform.__name__} over two axes (the last two), as numpy.fft.{name}."
    return transform2


def _fftfreq(n, d=1.0):
    """The sample frequencies of an n-point fft with sample spacing d, as
    numpy.fft.fftfreq: [0, 1, ..., -(n // 2), ..., -1] / (n d).

    >>> fft.fftfreq(4).tolist()
    [0.0, 0.25, -0.5, -0.25]
    """
    return Tensor(fftfreq_lists(n, d))


def _rfftfreq(n, d=1.0):
    """The sample frequencies of rfft's terms, as numpy.fft.rfftfreq: [0, ..., n // 2] / (n d)."""
    return Tensor(rfftfreq_lists(n, d))


for _f, _name in ((_fftn, "fftn"), (_ifftn, "ifftn"), (_rfftn, "rfftn"), (_irfftn, "irfftn"),
                  (_fftfreq, "fftfreq"), (_rfftfreq, "rfftfreq")):
    _f.__name__ = _f.__qualname__ = _name
del _f, _name
fft = _Namespace("fft", fft=_fft, ifft=_ifft, rfft=_rfft, irfft=_irfft, hfft=_hfft,
                 ihfft=_ihfft, fftn=_fftn, ifftn=_ifftn, rfftn=_rfftn, irfftn=_irfftn,
                 fft2=_two_axes(_fftn, "fft2"), ifft2=_two_axes(_ifftn, "ifft2"),
                 rfft2=_two_axes(_rfftn, "rfft2"), irfft2=_two_axes(_irfftn, "irfft2"),
                 fftfreq=_fftfreq, rfftfreq=_rfftfreq, fftshift=fftshift, ifftshift=ifftshift)


# Every unary op, reduction, movement op and the softmax family is also a Tensor method, and
# so are the binary ops (t.pow(2), t.maximum(u), t.matmul(u)).
for _op in (neg, exp, log, sqrt, sin, cos, tanh, relu, abs, sigmoid, square, reciprocal,
            sign, floor, ceil, round, clip, leaky_relu, silu, softplus, elu, erf, gelu, cumsum,
            cumprod,
            sum, mean, max, min, logsumexp, softmax, log_softmax, var, std, argmax, argmin, prod,
            reshape, transpose, broadcast_to, flatten, squeeze, expand_dims, swapaxes,
            moveaxis, flip, repeat, roll, tril, triu, diag, diagonal, sort, argsort, dot,
            ravel,
            add, sub, mul, div, pow, maximum, minimum, matmul, mod, floor_divide,
            less, less_equal, greater, greater_equal, equal, not_equal, astype, nonzero,
            take, ptp,
            logical_and, logical_or, logical_xor, logical_not):
    setattr(Tensor, _op.__name__, _op)
del _op
Tensor.trace = _matrix_trace  # rax.trace traces functions (chapter 10)
Tensor.all, Tensor.any = _all, _any
Tensor.conj = Tensor.conjugate = conj  # methods, as NumPy's; .real and .imag are attributes
Tensor.real, Tensor.imag = property(real), property(imag)


# ============================================================================================
# 6. Making tensors
#
# Constructors (zeros, ones, arange, randn, ...), then how Python data becomes nested lists
# of floats, with errors that say where it goes wrong, and how a tensor prints.
# ============================================================================================

def full(shape, value):
    """A new leaf of the given shape with every element `value`.

    >>> full((2, 2), 7)
    Tensor([[7.0, 7.0], [7.0, 7.0]])
    """
    shape = _as_shape("full", shape)
    if type(value) is bool or _is_bool_array(value) and getattr(value, "shape", None) == ():
        return _leaf(_full_lists(shape, bool(value)), shape, bool_)  # full of bools: bools
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        return _leaf(_full_lists(shape, complex(value)), shape, complex128)
    return _leaf(_full_lists(shape, _scalar("full", "value", value)), shape)


def zeros(shape):
    """A new leaf of zeros.

    >>> zeros((2, 3))
    Tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    """
    shape = _as_shape("zeros", shape)
    return _leaf(_full_lists(shape, 0.0), shape)


def ones(shape):
    """A new leaf of ones.

    >>> ones(3)
    Tensor([1.0, 1.0, 1.0])
    """
    shape = _as_shape("ones", shape)
    return _leaf(_full_lists(shape, 1.0), shape)


def zeros_like(t):
    """Zeros with the shape of t (False for a bool t, 0j for a complex one: as NumPy, of
    t's dtype).

    >>> zeros_like(Tensor([1, 2]))
    Tensor([0.0, 0.0])
    """
    t = _as_any(t, "zeros_like")
    return full(t.shape, _ZERO_OF[t.dtype])


def ones_like(t):
    """Ones with the shape of t (True for a bool t, as NumPy keeps its dtype).

    >>> ones_like(Tensor(5))
    Tensor(1.0)
    """
    t = _as_any(t, "ones_like")
    return full(t.shape, {bool_: True, complex128: 1 + 0j}.get(t.dtype, 1.0))


def arange(start, stop=None, step=1):
    """Evenly spaced values in [start, stop), as numpy.arange: arange(n) is 0, 1, ..., n-1.

    The values are NumPy's, bit for bit. With ints only they are start + i * step, exact.
    Otherwise they are start, start + step, and then start + i * delta for i >= 2, with
    delta = (start + step) - start, the step as rounded at start: arange(1, 2, 0.1) has
    1.2000000000000002, not 1.2, as NumPy.

    >>> arange(4)
    Tensor([0.0, 1.0, 2.0, 3.0])
    >>> arange(1, 2, 0.25)
    Tensor([1.0, 1.25, 1.5, 1.75])
    """
    if stop is None:
        start, stop = 0, start
    start, stop, step = args = [_arange_number(name, number) for name, number
                                in (("start", start), ("stop", stop), ("step", step))]
    if step == 0:
        raise ValueError("arange: step must not be zero")
    try:
        quotient = (stop - start) / step
        if quotient == 0 and stop != start:  # underflow: one value if positive, as NumPy
            n = 1 if math.copysign(1.0, quotient) > 0 else 0
        else:
            n = _max(0, math.ceil(quotient))
    except OverflowError:  # the quotient is beyond floats, or inf (1 / 1e-320)
        n = math.inf
    if n > MAX_SIZE:
        raise ValueError(f"arange: start={_text(start)}, stop={_text(stop)}, step={_text(step)}"
                         f" give more than rax.MAX_SIZE = {MAX_SIZE:,} values")
    if all(type(number) is int for number in args):
        if n:  # every value lies between these two, so it is a float if they are
            _scalar("arange", "the first value", start)
            _scalar("arange", "the last value", start + (n - 1) * step)
        return _leaf([float(start + i * step) for i in range(n)], (n,))
    first, delta = float(start), (float(start) + float(step)) - float(start)
    values = [first, first + float(step)] + [first + i * delta for i in range(2, n)]
    return _leaf(values[:n], (n,))


def _arange_number(name, number):
    """An argument of arange as a Python int or a finite float."""
    if isinstance(number, numbers.Integral):
        return operator.index(number)
    if not isinstance(number, numbers.Real):
        raise TypeError(f"arange: {name} must be a number, got {number!r}")
    number = _scalar("arange", name, number)
    if not math.isfinite(number):
        raise ValueError(f"arange: {name} must be finite, got {number!r}")
    return number


def eye(n, m=None):
    """The identity matrix: n x n (or n x m), ones on the diagonal.

    >>> eye(2)
    Tensor([[1.0, 0.0], [0.0, 1.0]])
    """
    n, m = _as_shape("eye", (n, n if m is None else m))
    return _leaf([[1.0 if i == j else 0.0 for j in range(m)] for i in range(n)], (n, m))


def randn(shape, *more_sides, rng=None):
    """A new leaf of samples from the standard normal distribution.

    `rng` (keyword only) is a random.Random or an int seed; None uses Python's global
    random generator. The shape is one argument: randn(2, 3) is a TypeError, not a vector
    of 2 seeded with 3.

    >>> randn((2, 3), rng=0).shape
    (2, 3)
    """
    if more_sides:
        if isinstance(shape, numbers.Integral):
            hint = f"pass the shape as one tuple, randn({_text((shape, *more_sides))})"
        else:
            hint = f"rng is keyword-only: randn({_text(shape)}, rng={more_sides[0]!r})"
        raise TypeError(f"randn takes one positional argument, the shape: {hint}")
    shape, rng = _as_shape("randn", shape), _as_rng(rng)
    return _leaf(_fold([rng.gauss(0.0, 1.0) for _ in range(math.prod(shape))], shape), shape)


def uniform(shape, low=0.0, high=1.0, *, rng=None):
    """A new leaf of samples drawn uniformly from [low, high). `rng` is keyword-only.

    An int shape goes with the default bounds only: uniform(2, 3) would read as shape
    (2, 3) to a PyTorch user and as shape (2,) with low = 3 to a NumPy user, so it is a
    TypeError; write uniform((2,), 3, 4).

    >>> x = uniform((100,), -1, 1, rng=0)
    >>> -1 <= x.min().item() <= x.max().item() < 1
    True
    """
    low, high = _scalar("uniform", "low", low), _scalar("uniform", "high", high)
    if isinstance(shape, numbers.Integral) and (low, high) != (0.0, 1.0):
        raise TypeError(f"uniform: shape {shape!r} with low={low!r}, high={high!r} is "
                        f"ambiguous (uniform(2, 3) is shape (2, 3) in PyTorch); pass the "
                        f"shape as a tuple: uniform(({shape!r},), {low!r}, {high!r})")
    shape, rng = _as_shape("uniform", shape), _as_rng(rng)
    values = [low + (high - low) * rng.random() for _ in range(math.prod(shape))]
    return _leaf(_fold(values, shape), shape)


def one_hot(labels, num_classes):
    """Rows of zeros with a one at each label: shape labels.shape + (num_classes,).

    It is an op on the labels, through which no gradient flows, so that in a program
    (chapter 10) the labels can be an input.

    >>> one_hot([2, 0], 3)
    Tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], op='one_hot')
    """
    labels = _as_tensor(labels, "one_hot")
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"one_hot: num_classes must be an int, got {num_classes!r}") from None
    if num_classes < 0:
        raise ValueError(f"one_hot: num_classes must not be negative, got {_text(num_classes)}")
    if labels.ndim >= MAX_NDIM:
        raise ValueError(f"one_hot: labels have {labels.ndim} axes; the result would have "
                         f"one more than {MAX_NDIM}")
    shape = _as_shape("one_hot", labels.shape + (num_classes,))  # at most MAX_SIZE elements
    return _node("one_hot", one_hot, one_hot_lists(labels.data, labels.shape, shape), shape,
                 (labels,), (None,), {"num_classes": num_classes})


_RULES["one_hot"] = _Kernel("one_hot_lists", lambda shapes, attrs, shape: (shapes[0], shape))


def _as_shape(op, shape):
    """shape as a tuple of non-negative ints (an int n means (n,)), of at most MAX_NDIM
    axes and MAX_SIZE elements. A tuple or list only: bytes, dicts and strings iterate
    too, into ints or keys, and are refused rather than read as a shape."""
    if not isinstance(shape, (tuple, list)):
        if _has_tolist(shape):  # a NumPy array or integer
            shape = shape.tolist()
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
    try:
        if not isinstance(shape, (tuple, list)):
            raise TypeError  # to the message below
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"{op}: shape must be an int or a tuple of ints, got {_text(shape)} "
                        f"({type(shape).__name__})") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{op}: shape {_text(shape)} has a negative side")
    if len(shape) > MAX_NDIM:
        raise ValueError(f"{op}: shape {_text(shape)} has more than {MAX_NDIM} axes")
    return _check_size(op, shape)


def _check_size(op, shape):
    """shape, if a tensor of that shape is not too large to build (see MAX_SIZE)."""
    # Sides of 0 are left out: nested lists of shape (0, n) are built n wide inside.
    if math.prod(n for n in shape if n) > MAX_SIZE:
        raise ValueError(f"{op}: shape {_text(shape)} is too large: rax holds at most "
                         f"rax.MAX_SIZE = {MAX_SIZE:,} elements (sides of 0 left out)")
    return shape


def _as_rng(rng):
    """A random.Random from an int seed or a Random; None means Python's global generator."""
    if rng is None:
        return random  # the module's functions draw from its global Random instance
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, numbers.Integral):
        return random.Random(operator.index(rng))  # np.int64: Random takes only int seeds
    raise TypeError(f"rng must be a random.Random, an int seed or None, got {rng!r}")


def _scalar(op, name, value):
    """The float in `value`, a number or a tensor (or array) of shape ()."""
    try:
        value = _as_tensor(value, op)
    except TypeError:  # a string, say: name the argument
        raise TypeError(f"{op}: {name} must be a number, got {value!r} "
                        f"({type(value).__name__})") from None
    if value.shape:
        raise ValueError(f"{op}: {name} must be a number, got a tensor of shape {value.shape}")
    _check_readable(value, f"{op}: {name}")
    return value.data


# ---- 6a. Python data in, text out ----------------------------------------------------------

class _DType(str):
    """A dtype: its name, a str ("float64", "bool"), equal also to NumPy's and Python's
    spellings of it (numpy.float64, numpy.dtype("bool"), float, bool), found by name, so rax
    needs no NumPy; numpy.zeros(3, dtype=t.dtype) works, as the name is a string."""

    __slots__ = ()
    _ALIASES = {"float64": ("float64", "float", "double", "f8", "d", "float_", "<f8", "=f8"),
                "bool": ("bool", "bool_", "?", "b1", "|b1"),
                "complex128": ("complex128", "complex", "cdouble", "c16", "D", "complex_",
                               "<c16", "=c16")}

    @property
    def name(self):
        return str(self)

    @property
    def kind(self):
        """NumPy's one-letter kind: "f" for float64, "b" for bool, "c" for complex128."""
        return {"bool": "b", "complex128": "c"}.get(str(self), "f")

    def __eq__(self, other):
        name = getattr(other, "name", None) or getattr(other, "__name__", None) or other
        return isinstance(name, str) and name in self._ALIASES[str(self)]

    def __ne__(self, other):
        return not self == other

    __hash__ = str.__hash__

    def __repr__(self):
        return str(self)


float64, bool_, complex128 = _DType("float64"), _DType("bool"), _DType("complex128")
_ZERO_OF = {float64: 0.0, bool_: False, complex128: 0j}  # each dtype's zero


def _as_dtype(dtype, op):
    """float64, bool_ or complex128 for any of their spellings; a TypeError for any other."""
    for known in (float64, bool_, complex128):
        if known == dtype:
            return known
    raise TypeError(f"{op}: rax has the dtypes float64, bool and complex128, not {dtype!r}")


def _as_any(value, op):
    """value as a Tensor of its own dtype: tensors pass through; numbers, nested lists and
    objects with a tolist() method (NumPy arrays and scalars) become constant leaves;
    nested lists with tensors inside are stacked, as array does (sum([x, y]), as
    numpy.sum). For the ops that keep a bool a bool (movement, where, max, logical ops)."""
    if isinstance(value, Tensor):
        return value
    if type(value) is bool:
        return _constant(value)
    if type(value) in _REAL_TYPES or isinstance(value, numbers.Real):
        try:
            return _constant(float(value))  # float(), so np.float64(2) is stored as 2.0
        except OverflowError:
            raise ValueError(f"{op}: {_text(value)} is too large for a float") from None
    if isinstance(value, numbers.Complex) and not _has_tolist(value):
        return _constant(complex(value))  # 1j, or NumPy's complex128 scalar (below)
    if isinstance(value, (list, tuple)) or _has_tolist(value):
        try:
            data, shape, dtype = _to_lists(value, op)
            return _node(None, None, data, shape, (), (), _CONSTANT, dtype)
        except TypeError:
            if not _holds_tensor(value):
                raise
        return array(value)
    raise TypeError(f"{op}: expected a Tensor, a number or a nested list, "
                    f"got {value!r} ({type(value).__name__})")


def _comparable(other):
    """Whether == can compare a tensor with other elementwise: a tensor, a number, nested
    lists or an array. Anything else (None, a string, ...) is simply not equal (Python's
    fallback to identity), so `t in [None, ...]` and `key.count(...)` keep working."""
    return isinstance(other, (Tensor, numbers.Number, list, tuple)) or _has_tolist(other)


def _tensor_array(self, dtype=None, copy=None):
    """The values as a new NumPy array, for numpy.asarray(t) and numpy.array(t).

    NumPy converts the nested lists at C speed, instead of indexing the tensor element
    by element. NumPy 2 passes copy; copy=False cannot be honoured, since the values
    are Python floats that NumPy has to copy.
    """
    if copy is False:
        raise ValueError("numpy.asarray(tensor, copy=False): a Tensor holds Python "
                         "floats, which NumPy can only copy")
    _check_readable(self, "numpy.asarray()")
    numpy = sys.modules.get("numpy")  # NumPy calls this, so it is loaded: rax imports
    if numpy is None:                 # no NumPy, here or anywhere
        raise TypeError("Tensor.__array__ is NumPy's hook: call numpy.asarray(t)")
    dtype = getattr(numpy, {"bool": "bool_"}.get(self.dtype, self.dtype)) if dtype is None \
        else dtype
    return numpy.array(self.data, dtype=dtype).reshape(self.shape)


def _tensor_contains(self, value):
    """value in t: whether some element equals it (as NumPy's (t == value).any())."""
    return bool(_any(equal(self, value)))


# Two methods that only this chapter's machinery explains (NumPy's hook, and `in`).
Tensor.__array__, Tensor.__contains__ = _tensor_array, _tensor_contains


_REAL_TYPES = frozenset((float, int, bool))
_COMPLEX_TYPES = _REAL_TYPES | {complex}


def _has_tolist(obj):
    """Whether obj converts itself to Python numbers and lists: a NumPy array or scalar, an
    array.array, a memoryview (duck typing, so rax never imports NumPy)."""
    return callable(getattr(obj, "tolist", None))


def _text(value):
    """repr(value) for an error message, but an int of more than 4300 digits, which Python
    3.11+ refuses to print, by its number of digits (on every version), also in a tuple."""
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_text, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, int) and _abs(value) >= 10 ** 4300:
        digits = int(math.log10(_abs(value)))  # may be one off either way: correct it
        digits += (10 ** (digits + 1) <= _abs(value)) - (10 ** digits > _abs(value))
        return f"{'a negative' if value < 0 else 'an'} int of {digits + 1} digits"
    try:
        return repr(value)
    except ValueError:  # a list holding such an int, or a lower sys.set_int_max_str_digits
        return f"<{type(value).__name__} too long to print>"


def _to_lists(obj, context):
    """(data, shape, dtype) for a number, a rectangular nested list/tuple of numbers, or an
    object with a tolist() method that gives one (a NumPy array or scalar, say).

    The result is a fresh copy with every value a float, or every value a bool if all of
    them are bools (or the array's dtype is bool). On bad input raise an error that says
    where: ValueError for a ragged list, TypeError for something that is not a number.
    """
    dtype = float64
    if not isinstance(obj, (list, tuple)) and _has_tolist(obj):
        if _is_bool_array(obj):
            dtype = bool_
        elif _is_complex_array(obj):
            dtype = complex128
        sides = getattr(obj, "shape", None)
        if isinstance(sides, tuple) and 0 in sides and len(sides) <= MAX_NDIM:  # tolist()
            sides = tuple(operator.index(n) for n in sides)  # of an empty array is [], which
            return _full_lists(sides, _ZERO_OF[dtype]), sides, dtype
        obj = obj.tolist()
    shape = []
    probe = obj
    while isinstance(probe, (list, tuple)) and len(shape) <= MAX_NDIM:
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    shape = tuple(shape)
    if len(shape) > MAX_NDIM:
        raise ValueError(f"{context}: data is nested more than {MAX_NDIM} levels deep")
    data = None
    if type(probe) is bool or _is_bool_array(probe):  # all bools make a bool tensor; bools
        # among numbers are numbers (np.True_ counts as a bool)
        data = _copy_rectangular(obj, shape, bool)
        dtype = bool_ if data is not None else float64
    if data is None and dtype is not complex128:
        try:
            data = _copy_rectangular(obj, shape, float)
        except OverflowError:  # float(10 ** 400)
            data = None
    if data is None:  # a complex number among them makes all complex, as in NumPy
        try:
            data, dtype = _copy_rectangular(obj, shape, complex), complex128
        except OverflowError:
            data = None
    if data is None:
        raise _shape_or_error(obj, "data", context, 0)[1]
    return data, shape, dtype


def _is_complex_array(obj):
    """Whether an array holds complex numbers: NumPy's and JAX's kind "c", torch's
    complex64 and complex128 (complex64 is read as complex128, as float32 as float64)."""
    dtype = getattr(obj, "dtype", None)
    kind = getattr(dtype, "kind", None)
    return kind == "c" if kind is not None else str(dtype).startswith("torch.complex")


def _is_bool_array(obj):
    """Whether an array holds bools: NumPy's and JAX's dtype kind "b", torch's torch.bool."""
    dtype = getattr(obj, "dtype", None)
    if dtype is None:
        return False
    kind = getattr(dtype, "kind", None)  # NumPy's and JAX's, at once; torch's has no kind
    return kind == "b" if kind is not None else str(dtype) == "torch.bool"


def _copy_rectangular(obj, shape, kind):
    """Copy obj as nested lists of exactly `shape` whose values are of `kind` (float: any
    real number, made a float; bool: bools only), or None if it does not fit."""
    if not shape:
        if kind is bool:
            return bool(obj) if type(obj) is bool or _is_bool_array(obj) else None
        if type(obj) in _REAL_TYPES or isinstance(obj, numbers.Real):
            return float(obj) if kind is float else complex(obj)
        if kind is complex and isinstance(obj, numbers.Complex):
            return complex(obj)
        return None
    if not isinstance(obj, (list, tuple)) or len(obj) != shape[0]:
        return None
    if len(shape) == 1:
        types = set(map(type, obj))  # the common cases, checked at C speed
        if kind is float and types <= _REAL_TYPES:
            return list(map(float, obj))
        if kind is bool and types <= {bool}:
            return list(obj)
        if kind is complex and types <= _COMPLEX_TYPES:
            return list(map(complex, obj))
        row = [_copy_rectangular(value, (), kind) for value in obj]
    else:
        row = [_copy_rectangular(child, shape[1:], kind) for child in obj]
    return None if None in row else row


def _shape_or_error(obj, path, context, depth):
    """(shape of obj, None) if obj is a number or a rectangular nested list of numbers, else
    (None, the exception that names the first place where it is not)."""
    if depth > MAX_NDIM:
        return None, ValueError(f"{context}: {path} is nested more than {MAX_NDIM} levels deep")
    if isinstance(obj, Tensor):
        return None, TypeError(
            f"{context}: {path} is a Tensor; use rax.stack to combine tensors into one")
    if isinstance(obj, (list, tuple)):
        first = None
        for i, child in enumerate(obj):
            shape, error = _shape_or_error(child, f"{path}[{i}]", context, depth + 1)
            if error is not None:
                return None, error
            if first is None:
                first = shape
            elif shape != first:
                return None, ValueError(
                    f"{context}: ragged nested list: {path}[{i}] has shape {shape}, "
                    f"but {path}[0] has shape {first}")
        return (len(obj),) + (first or ()), None
    if isinstance(obj, numbers.Complex):
        try:
            complex(obj)
        except OverflowError:
            return None, ValueError(f"{context}: {path} = {_text(obj)} is too large for a float")
        return (), None
    return None, TypeError(
        f"{context}: {path} is {obj!r} ({type(obj).__name__}), not a number")


# repr prints every value of a tensor of up to 1000 elements; a bigger one is summarised
# as NumPy does with its default print options (threshold=1000, edgeitems=3). Rows that
# are not shown are never visited, and at most _REPR_MAX_SHOWN values are shown in all, so
# that a tensor of many axes (7 ** 11 elements shows 6 ** 11 values in NumPy's way) still
# prints at once.
_REPR_THRESHOLD, _REPR_EDGE, _REPR_MAX_SHOWN = 1000, 3, 10_000


def _summarised(data, shape, budget):
    """The text of nested list `data` with only the first and last _REPR_EDGE entries of
    each longer axis, "..." standing for the rest. budget is a one-element list: the
    number of values still to show; once it is spent, "..." stands for all the rest."""
    if not shape:
        budget[0] -= 1
        return repr(data)
    n, edge = shape[0], _REPR_EDGE
    shown = itertools.chain(range(edge), range(n - edge, n)) if n > 2 * edge else range(n)
    parts = []
    for i in shown:
        if budget[0] <= 0:
            parts.append("...")
            break
        if i == n - edge and n > 2 * edge:
            parts.append("...")
        parts.append(_summarised(data[i], shape[1:], budget))
    return "[" + ", ".join(parts) + "]"


# ============================================================================================
# 7. Trees, optimizers, saving
#
# A tree is a nest of dicts, lists and tuples with tensors (or numbers) at the leaves, such
# as a model's params. Leaves are visited in order, dict keys sorted (as JAX's tree_util).
# An optimizer maps (params, gradients) to new params, fresh leaves, so nothing changes in
# place; save and load write such a tree as exact, readable JSON and read it back.
# ============================================================================================

__all__ += [
    "tree_map", "tree_leaves", "sgd", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "save",
    "load", "constant_schedule", "linear_schedule", "exponential_decay",
    "cosine_decay_schedule", "warmup_cosine_decay_schedule", "warmup_cosine_decay",
    "piecewise_constant_schedule", "global_norm", "clip_by_global_norm", "clip_by_value",
    "minimize", "OptimizeResult"]


def tree_leaves(tree):
    """The leaves of a tree, in order (dict keys sorted).

    >>> tree_leaves({"b": [1, 2], "a": Tensor(3)})
    [Tensor(3.0), 1, 2]
    """
    return [leaf for _, leaf in _leaves_with_keys(tree)]


def tree_map(f, tree, *rest):
    """A tree of the same structure with f(leaf, *matching leaves of rest) at each leaf.

    >>> tree_map(lambda x, y: x + y, {"a": 1, "b": (2, 3)}, {"a": 10, "b": (20, 30)})
    {'a': 11, 'b': (22, 33)}
    """
    if not callable(f):
        raise TypeError(f"tree_map: f must be callable, got {f!r:.80} ({type(f).__name__})")
    columns = [[leaf for _, leaf in _leaves_with_keys(tree, "tree_map")]]
    for i, other in enumerate(rest, 1):
        columns.append(_matching_leaves("tree_map", tree, other, "tree", f"tree {i}"))
    return _rebuild(tree, iter([f(*leaves) for leaves in zip(*columns)]))


def _leaves_with_keys(tree, op="tree_leaves", name="tree"):
    """[(keys, leaf), ...] in order; keys are the dict keys and list positions that lead from
    the root of the tree to the leaf.

    The walk keeps its own stack rather than recursing, so a tree may be nested any number
    of levels deep, and holds the way to each node as a linked path (see _unlink), so its
    memory grows with the depth, not with its square. A container found inside itself is a
    ValueError: that tree has no end.
    """
    items, stack = [], [((), tree)]
    open_containers = {}  # id -> path of each container whose children are being walked
    while stack:
        path, node = stack.pop()
        if path is None:  # the marker pushed below: every child of container `node` is done
            del open_containers[node]
            continue
        children = _children(node, op, name, path)
        if children is None:
            items.append((_unlink(path), node))
            continue
        if id(node) in open_containers:
            raise ValueError(f"{op}: the tree contains itself: {_path(name, _unlink(path))} "
                             f"is {_path(name, _unlink(open_containers[id(node)]))}")
        open_containers[id(node)] = path
        stack.append((None, id(node)))
        stack.extend(((path, key), child) for key, child in reversed(children))
    return items


def _unlink(path):
    """The keys of a linked path, root first: () is the root, and (parent's path, key) the
    child under key. A walk links each child to its parent in O(1), instead of copying a
    tuple of all the keys above it at every level."""
    keys = []
    while path:
        path, key = path
        keys.append(key)
    return tuple(reversed(keys))


def _sorted_keys(tree, op, name, path):
    """The keys of the dict `tree` (at the linked path, see _unlink) in sorted order, the
    order of its leaves."""
    try:
        return sorted(tree)
    except TypeError as error:
        shown = ", ".join(repr(key) for key in itertools.islice(tree, 6))
        raise TypeError(f"{op}: the keys of {_path(name, _unlink(path))} ({shown}) cannot "
                        f"be sorted ({error}); a tree's leaves follow its dict keys in sorted "
                        f"order, so use keys of one type, such as str") from None


def _children(tree, op, name, path):
    """The (key, child) pairs of a dict (keys sorted), a list or a tuple; None for a leaf."""
    if isinstance(tree, dict):
        return [(key, tree[key]) for key in _sorted_keys(tree, op, name, path)]
    if isinstance(tree, (list, tuple)):
        return list(enumerate(tree))
    return None


def _path(name, keys):
    """The keys of a leaf written as Python indexes with them: params['w'][0]."""
    return name + "".join(f"[{key!r}]" for key in keys)


def _rebuild(tree, leaves):
    """A tree shaped like `tree` whose leaves are taken, in order, from the iterator leaves.

    Iterative, as _leaves_with_keys: each container being rebuilt waits on a stack with the
    children built so far, and is built itself once it has them all.
    """
    stack = []  # (container, its (key, child) pairs, its children built so far)
    node = tree
    while True:
        children = _children(node, "tree_map", "tree", ())
        if children:
            stack.append((node, children, []))
            node = children[0][1]
            continue
        value = next(leaves) if children is None else _container_like(node, [], [])
        while stack:  # hand value to its container, and build each container now complete
            container, children, built = stack[-1]
            built.append(value)
            if len(built) < len(children):
                node = children[len(built)][1]
                break
            stack.pop()
            value = _container_like(container, children, built)
        else:
            return value


def _container_like(tree, children, values):
    """A container of tree's type holding values (a dict's under the keys of `children`)."""
    if isinstance(tree, dict):
        return {key: value for (key, _), value in zip(children, values)}
    if hasattr(tree, "_fields"):  # a namedtuple
        return type(tree)(*values)
    return type(tree)(values)


def _structure_difference(a, b, name, names):
    """Where trees a and b (called names[0] and names[1]) first differ in structure, in
    words; None if they do not. Iterative, as _leaves_with_keys; a must have an end."""
    def at(path, *more):  # the place for a message: tree['w'][0]
        return _path(name, _unlink(path) + more)

    stack = [((), a, b)]  # (linked path, see _unlink; a's node; b's node)
    while stack:
        path, a, b = stack.pop()
        if not isinstance(a, (dict, list, tuple)) and not isinstance(b, (dict, list, tuple)):
            continue
        if type(a) is not type(b):
            return (f"{at(path)} is a {type(a).__name__} in {names[0]} and a "
                    f"{type(b).__name__} in {names[1]}")
        if isinstance(a, dict):
            order = _sorted_keys(a, "tree_map", name, path)
            if a.keys() != b.keys():
                key = next((key for key in order if key not in b), None)
                has, lacks = names
                if key is None:
                    key, has, lacks = next(key for key in b if key not in a), lacks, has
                return f"{at(path, key)} is in {has} but not in {lacks}"
            pairs = [(key, a[key], b[key]) for key in order]
        else:
            if len(a) != len(b):
                has, lacks = names if len(a) > len(b) else names[::-1]
                return (f"{at(path, _min(len(a), len(b)))} is in {has} but not in {lacks} "
                        f"({len(a)} items against {len(b)})")
            pairs = [(i, x, y) for i, (x, y) in enumerate(zip(a, b))]
        stack.extend(((path, key), x, y) for key, x, y in reversed(pairs))
    return None


def _matching_leaves(op, tree, other, name, other_name):
    """The leaves of `other`, which must have the same structure as `tree`."""
    difference = _structure_difference(tree, other, name, (name, other_name))
    if difference:
        raise ValueError(f"{op}: {other_name} does not have the structure of {name}: "
                         f"{difference}")
    return [leaf for _, leaf in _leaves_with_keys(other, op, other_name)]


# ---- 7a. Optimizers ------------------------------------------------------------------------
#
# sgd is a function; SGD and Adam keep state between updates (momentum, moments), per leaf
# of params, checked at every update, and shown as a tree by opt.state for saving.

def sgd(params, grads, lr):
    """Plain gradient descent: params - lr * grads, leaf by leaf, as new leaves.

    >>> sgd({"w": Tensor([1.0, 2.0])}, {"w": Tensor([10.0, 10.0])}, lr=0.1)
    {'w': Tensor([0.0, 1.0])}
    """
    lr = _nonnegative("sgd", "lr", lr)
    leaves = _params_and_grads("sgd", params, grads)
    if _current_trace() is not None:  # traced (chapter 10): the same, as ops
        return _rebuild(params, iter([p - lr * g for _, p, g in leaves]))
    return _new_params(params, [elementwise(lambda p, g: p - lr * g, (p.data, g.data), p.ndim)
                                for _, p, g in leaves])


class SGD:
    """Stochastic gradient descent, exactly as torch.optim.SGD.

    For each leaf, with d the gradient: d = -d if maximize; d = d + weight_decay * p; with
    momentum, buf = d on the first step and momentum * buf + (1 - dampening) * d after,
    then d = d + momentum * buf (nesterov) or d = buf; finally p = p - lr * d.

    Hyperparameters are real numbers, kept as floats (nesterov and maximize are True or
    False). ``opt.state`` is {"step": updates taken, "momentum_buffer": a tree shaped like
    params} (the buffers only with momentum, after the first update); ``SGD(..., state=s)``
    resumes from it. Each update checks that params have the leaves and shapes of the state.

    >>> opt = SGD(lr=0.1, momentum=0.9)
    >>> p = {"w": Tensor([1.0])}
    >>> p = opt.update(p, {"w": Tensor([1.0])})
    >>> p = opt.update(p, {"w": Tensor([1.0])})
    >>> p["w"].item()  # 1 - 0.1 * 1 - 0.1 * (0.9 * 1 + 1)
    0.71
    >>> opt.state
    {'step': 2, 'momentum_buffer': {'w': Tensor([1.9])}}
    """

    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, state=None):
        self.lr = _learning_rate("SGD", lr)
        self.momentum = _nonnegative("SGD", "momentum", momentum)
        self.dampening = _hyperparameter("SGD", "dampening", dampening)
        self.weight_decay = _nonnegative("SGD", "weight_decay", weight_decay)
        self.nesterov = _flag("SGD", "nesterov", nesterov)
        self.maximize = _flag("SGD", "maximize", maximize)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening == 0")
        self._step, self._skeleton, self._buffers = _read_state(
            "SGD", state, ("momentum_buffer",))
        if self._buffers is not None and not self.momentum:
            raise ValueError("SGD: state has a 'momentum_buffer', but momentum is 0, which "
                             "would ignore it")

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
                f"weight_decay={self.weight_decay}, nesterov={self.nesterov}, "
                f"maximize={self.maximize})")

    @property
    def state(self):
        """{"step": updates taken, "momentum_buffer": tree like params}, for rax.save."""
        return _state_tree(self._step, self._skeleton, self._buffers, ("momentum_buffer",))

    def update(self, params, grads):
        """New params from params and their gradients (a GradNode or a tree like params)."""
        _refuse_trace("SGD.update")
        lr, momentum, dampening = _scheduled("SGD.update", self.lr, self._step), \
            self.momentum, self.dampening
        leaves = _params_and_grads("SGD.update", params, grads)
        buffers = _state_of_leaves("SGD.update", leaves, self._buffers)
        new_data, new_buffers = [], {}
        for (keys, p, g), buf in zip(leaves, buffers):
            d, ndim = _gradient_step_start(p, g, self.maximize, self.weight_decay), p.ndim
            if momentum:
                buf = d if buf is None else elementwise(
                    lambda b, d: momentum * b + (1.0 - dampening) * d, (buf[0].data, d), ndim)
                d = elementwise(lambda d, b: d + momentum * b, (d, buf), ndim) \
                    if self.nesterov else buf
                new_buffers[keys] = (_leaf(buf, p.shape),)
            new_data.append(elementwise(lambda p, d: p - lr * d, (p.data, d), ndim))
        self._step += 1  # only now: a failed call changes nothing
        if momentum:
            self._skeleton, self._buffers = _skeleton(params), new_buffers
        return _new_params(params, new_data)


class Adam:
    """Adam, exactly as torch.optim.Adam (weight_decay is added to the gradient).

    For each leaf, with d the gradient and t the step number from 1: d = -d if maximize;
    d = d + weight_decay * p; m = beta1 m + (1 - beta1) d; v = beta2 v + (1 - beta2) d d;
    with amsgrad, v_max = max(v_max, v) stands for v below (as torch's amsgrad);
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps).
    With eps = 0, a zero gradient gives 0/0 = nan there, as in PyTorch.

    lr is a number or a schedule, a function of the step count (updates taken before this
    one: 0 first) that gives the number, as optax's (see warmup_cosine_decay_schedule).
    Hyperparameters are real numbers, kept as floats (maximize and amsgrad are True or
    False). ``opt.state`` is {"step": t, "exp_avg": m, "exp_avg_sq": v} (and
    "max_exp_avg_sq" with amsgrad) with m and v trees shaped like params (after the first
    update); ``Adam(..., state=s)`` resumes from it, the schedule too. Each update checks
    that params have the leaves and shapes of the state.

    >>> opt = Adam(lr=0.1)
    >>> opt.update({"w": Tensor([1.0])}, {"w": Tensor([5.0])})["w"].item()  # moves by ~lr
    0.9000000002
    >>> opt.state["step"], opt.state["exp_avg"]["w"].shape, sorted(opt.state)
    (1, (1,), ['exp_avg', 'exp_avg_sq', 'step'])
    """
    _NAME, _DECOUPLED = "Adam", False  # AdamW: weight decay applied to p, not added to d

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 maximize=False, amsgrad=False, state=None):
        name = self._NAME
        self.lr = _learning_rate(name, lr)
        self.betas = _betas(name, betas)
        self.eps = _nonnegative(name, "eps", eps)
        self.weight_decay = _nonnegative(name, "weight_decay", weight_decay)
        self.maximize = _flag(name, "maximize", maximize)
        self.amsgrad = _flag(name, "amsgrad", amsgrad)
        self._step, self._skeleton, self._buffers = _read_state(name, state, self._names())
        if self._step and self._buffers is None:
            raise ValueError(f"{name}: state['step'] is {self._step}, but the state has no "
                             f"{' and '.join(map(repr, self._names()))} to go with it")

    def _names(self):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def __repr__(self):
        return (f"{self._NAME}(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, maximize={self.maximize}, "
                f"amsgrad={self.amsgrad}, steps taken={self._step})")

    @property
    def state(self):
        """{"step": t, "exp_avg": tree like params, "exp_avg_sq": tree}, for rax.save."""
        return _state_tree(self._step, self._skeleton, self._buffers, self._names())

    def update(self, params, grads):
        """New params from params and their gradients (a GradNode or a tree like params)."""
        op = f"{self._NAME}.update"
        _refuse_trace(op)
        (beta1, beta2), eps = self.betas, self.eps
        leaves = _params_and_grads(op, params, grads)
        moments = _state_of_leaves(op, leaves, self._buffers)
        lr, step = _scheduled(op, self.lr, self._step), self._step + 1
        step_size = lr / (1.0 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
        shrink = 1.0 - lr * self.weight_decay  # AdamW's decay of p itself

        def new_param(p, m, v):
            return p - step_size * m / (_sqrt(v) / bias_correction2_sqrt + eps)

        def new_param_safe(p, m, v):  # the same, where eps = 0 meets v = 0
            return p - _div(step_size * m, _sqrt(v) / bias_correction2_sqrt + eps)

        new_data, new_moments = [], {}
        for (keys, p, g), moment in zip(leaves, moments):
            ndim, p_data = p.ndim, p.data
            d = _gradient_step_start(p, g, self.maximize, 0.0 if self._DECOUPLED
                                     else self.weight_decay)
            if self._DECOUPLED and self.weight_decay:
                p_data = elementwise(lambda p: p * shrink, (p_data,), ndim)
            buffers = [b.data for b in moment] if moment else \
                [_full_lists(p.shape, 0.0)] * len(self._names())
            m = elementwise(lambda m, d: beta1 * m + (1.0 - beta1) * d, (buffers[0], d), ndim)
            v = elementwise(lambda v, d: beta2 * v + (1.0 - beta2) * d * d, (buffers[1], d),
                            ndim)
            kept = [m, v]
            if self.amsgrad:  # the largest v so far (nan spreads, as torch.maximum)
                kept.append(_MAXIMUM((buffers[2], v), ndim))
            new_moments[keys] = tuple(_leaf(b, p.shape) for b in kept)
            new_data.append(elementwise(new_param, (p_data, m, kept[-1]), ndim,
                                        safe=new_param_safe))
        # only now: a failed call changes nothing
        self._step, self._skeleton, self._buffers = step, _skeleton(params), new_moments
        return _new_params(params, new_data)


class AdamW(Adam):
    """AdamW, exactly as torch.optim.AdamW: Adam whose weight decay shrinks each param
    itself, p = p * (1 - lr * weight_decay), before the Adam step, instead of adding
    weight_decay * p to the gradient (decoupled weight decay; 1e-2 by default, as PyTorch).

    >>> AdamW(lr=0.1).update({"w": Tensor([1.0])}, {"w": Tensor([5.0])})["w"].item()
    0.8990000002
    """
    _NAME, _DECOUPLED = "AdamW", True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False, state=None):  # torch's order of arguments
        super().__init__(lr, betas, eps, weight_decay, maximize, amsgrad, state)


class _Optimizer:
    """What RMSprop and Adagrad share: the state (a step count and named buffers per leaf),
    checks, resuming, and the loop over leaves; each says its own step for one leaf,
    _leaf_step(p, d, buffers, lr, step) -> (p's new data, its new buffers), on nested lists
    (d is the gradient after maximize and weight decay)."""

    _NAME, _BUFFERS = "", ()

    def _start(self, lr, weight_decay, maximize, state):
        self.lr = _learning_rate(self._NAME, lr)
        self.weight_decay = _nonnegative(self._NAME, "weight_decay", weight_decay)
        self.maximize = _flag(self._NAME, "maximize", maximize)
        self._step, self._skeleton, self._buffers = _read_state(self._NAME, state,
                                                                self._names())

    def _names(self):
        return self._BUFFERS

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k[0] != "_")
        return f"{self._NAME}({settings}, steps taken={self._step})"

    @property
    def state(self):
        """{"step": updates taken, and each buffer as a tree like params}, for rax.save."""
        return _state_tree(self._step, self._skeleton, self._buffers, self._names())

    def update(self, params, grads):
        """New params from params and their gradients (a GradNode or a tree like params)."""
        op = f"{self._NAME}.update"
        _refuse_trace(op)
        leaves = _params_and_grads(op, params, grads)
        buffers = _state_of_leaves(op, leaves, self._buffers)
        lr, step = _scheduled(op, self.lr, self._step), self._step + 1
        new_data, new_buffers = [], {}
        for (keys, p, g), kept in zip(leaves, buffers):
            d = _gradient_step_start(p, g, self.maximize, self.weight_decay)
            kept = [b.data for b in kept] if kept else [
                _full_lists(p.shape, self._initial(name)) for name in self._names()]
            data, kept = self._leaf_step(p, d, kept, lr, step)
            new_data.append(data)
            new_buffers[keys] = tuple(_leaf(b, p.shape) for b in kept)
        # only now: a failed call changes nothing
        self._step, self._skeleton, self._buffers = step, _skeleton(params), new_buffers
        return _new_params(params, new_data)

    def _initial(self, name):
        return 0.0


class RMSprop(_Optimizer):
    """RMSprop, exactly as torch.optim.RMSprop.

    For each leaf, with d the gradient: d = -d if maximize; d = d + weight_decay * p;
    s = alpha s + (1 - alpha) d d; centered: a = a + (1 - alpha) (d - a), and the
    denominator is sqrt(s - a a) + eps, else sqrt(s) + eps; with momentum,
    b = momentum b + d / denominator and p = p - lr b, else p = p - lr d / denominator.
    The state holds "square_avg", and "momentum_buffer" and "grad_avg" when used.

    >>> RMSprop(lr=0.01).update({"w": Tensor([1.0])}, {"w": Tensor([2.0])})["w"].item()
    0.9000000049999998
    """
    _NAME = "RMSprop"

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False, state=None):
        self.alpha = _nonnegative("RMSprop", "alpha", alpha)
        self.eps = _nonnegative("RMSprop", "eps", eps)
        self.momentum = _nonnegative("RMSprop", "momentum", momentum)
        self.centered = _flag("RMSprop", "centered", centered)
        self._start(lr, weight_decay, maximize, state)

    def _names(self):
        return ("square_avg",) + (("momentum_buffer",) if self.momentum else ()) + (
            ("grad_avg",) if self.centered else ())

    def _leaf_step(self, p, d, kept, lr, step):
        alpha, eps, momentum, ndim = self.alpha, self.eps, self.momentum, p.ndim
        square = elementwise(lambda s, d: s * alpha + (1.0 - alpha) * d * d, (kept[0], d),
                             ndim)
        new = [square]
        if self.centered:  # torch's lerp of the mean gradient, then sqrt(s - a * a)
            mean = elementwise(lambda a, d: a + (1.0 - alpha) * (d - a), (kept[-1], d), ndim)
            denominator = elementwise(lambda s, a: _sqrt(s + -1.0 * a * a) + eps,
                                      (square, mean), ndim)
        else:
            denominator = elementwise(lambda s: _sqrt(s) + eps, (square,), ndim)
        if momentum:
            buf = elementwise(lambda b, d, q: b * momentum + _div(d, q),
                              (kept[1], d, denominator), ndim)
            new.append(buf)
            data = elementwise(lambda p, b: p + -lr * b, (p.data, buf), ndim)
        else:
            data = elementwise(lambda p, d, q: p + -lr * _div(d, q), (p.data, d, denominator),
                               ndim)
        if self.centered:
            new.append(mean)
        return data, new


class Adagrad(_Optimizer):
    """Adagrad, exactly as torch.optim.Adagrad.

    For each leaf, with d the gradient and t the step number from 1: d = -d if maximize;
    d = d + weight_decay * p; clr = lr / (1 + (t - 1) lr_decay); s = s + d d (s starts at
    initial_accumulator_value); p = p - clr d / (sqrt(s) + eps). The state holds "sum".

    >>> Adagrad(lr=0.1).update({"w": Tensor([1.0])}, {"w": Tensor([2.0])})["w"].item()
    0.900000000005
    """
    _NAME, _BUFFERS = "Adagrad", ("sum",)

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, maximize=False, state=None):
        self.lr_decay = _nonnegative("Adagrad", "lr_decay", lr_decay)
        self.initial_accumulator_value = _nonnegative(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value)
        self.eps = _nonnegative("Adagrad", "eps", eps)
        self._start(lr, weight_decay, maximize, state)

    def _initial(self, name):
        return self.initial_accumulator_value

    def _leaf_step(self, p, d, kept, lr, step):
        clr, eps, ndim = lr / (1.0 + (step - 1) * self.lr_decay), self.eps, p.ndim
        total = elementwise(lambda s, d: s + 1.0 * d * d, (kept[0], d), ndim)
        data = elementwise(lambda p, d, s: p + -clr * _div(d, _sqrt(s) + eps),
                           (p.data, d, total), ndim)
        return data, [total]


# ---- Schedules: the learning rate as a function of the step count (optax's names) ----------
#
# A schedule is a plain function step -> float: step is the number of updates taken before
# this one (0 for the first), as optax counts. It is part of the optimizer's state, so a
# resumed run goes on along the schedule. The formulas are optax's, number for number.

def constant_schedule(value):
    """A schedule that is `value` at every step (optax.constant_schedule)."""
    value = _hyperparameter("constant_schedule", "value", value)
    return lambda step: value


def linear_schedule(init_value, end_value, transition_steps, transition_begin=0):
    """init_value until transition_begin, then straight to end_value over transition_steps
    steps, then end_value (optax.linear_schedule; init_value for ever if transition_steps
    <= 0).

    >>> [linear_schedule(1.0, 0.0, 4)(t) for t in (0, 1, 4, 9)]
    [1.0, 0.75, 0.0, 0.0]
    """
    op = "linear_schedule"
    init, end = _hyperparameter(op, "init_value", init_value), _hyperparameter(
        op, "end_value", end_value)
    steps, begin = _index(op, "transition_steps", transition_steps), _max(_index(
        op, "transition_begin", transition_begin), 0)  # a negative begin is 0, as optax's
    if steps <= 0:
        return lambda step: init

    def schedule(step):
        count = _min(_max(step - begin, 0), steps)
        return (init - end) * (1.0 - count / steps) + end
    return schedule


def exponential_decay(init_value, transition_steps, decay_rate, transition_begin=0,
                      staircase=False, end_value=None):
    """init_value * decay_rate ** ((step - transition_begin) / transition_steps), the
    exponent floored if staircase, init_value before transition_begin, and bounded by
    end_value if given (optax.exponential_decay).

    >>> exponential_decay(1.0, 10, 0.5)(20)
    0.25
    """
    op = "exponential_decay"
    init, rate = _hyperparameter(op, "init_value", init_value), _hyperparameter(
        op, "decay_rate", decay_rate)
    steps, begin = _index(op, "transition_steps", transition_steps), _max(_index(
        op, "transition_begin", transition_begin), 0)  # a negative begin is 0, as optax's
    if steps <= 0 or rate == 0.0:  # as optax: then the schedule is constant
        return lambda step: init
    end = None if end_value is None else _hyperparameter(op, "end_value", end_value)

    def schedule(step):
        count = step - begin
        p = math.floor(count / steps) if staircase else count / steps
        value = init if count <= 0 else init * rate ** p
        if end is not None:
            value = _max(value, end) if rate < 1.0 else _min(value, end)
        return value
    return schedule


def cosine_decay_schedule(init_value, decay_steps, alpha=0.0, exponent=1.0):
    """init_value * ((1 - alpha) * (0.5 (1 + cos(pi min(step, decay_steps) / decay_steps)))
    ** exponent + alpha) (optax.cosine_decay_schedule): from init_value down to
    alpha * init_value.

    >>> f"{cosine_decay_schedule(1.0, 100)(50):.12f}"
    '0.500000000000'
    """
    op = "cosine_decay_schedule"
    init, alpha = _hyperparameter(op, "init_value", init_value), _hyperparameter(
        op, "alpha", alpha)
    steps, exponent = _index(op, "decay_steps", decay_steps), _hyperparameter(
        op, "exponent", exponent)
    if steps <= 0:
        raise ValueError(f"{op}: decay_steps must be > 0, got {steps}")

    def schedule(step):
        cosine = 0.5 * (1.0 + math.cos(math.pi * _min(step, steps) / steps))
        return init * ((1.0 - alpha) * cosine ** exponent + alpha)
    return schedule


def warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps, decay_steps,
                                 end_value=0.0, exponent=1.0):
    """A linear warmup from init_value to peak_value over warmup_steps, then a cosine decay
    to end_value, reached at decay_steps in all (optax.warmup_cosine_decay_schedule).

    >>> s = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110)
    >>> s(0), s(5), s(10), s(110)
    (0.0, 0.5, 1.0, 0.0)
    """
    op = "warmup_cosine_decay_schedule"
    peak = _hyperparameter(op, "peak_value", peak_value)
    end = _hyperparameter(op, "end_value", end_value)
    warmup, total = _index(op, "warmup_steps", warmup_steps), _index(op, "decay_steps",
                                                                        decay_steps)
    if total <= warmup:
        raise ValueError(f"{op}: decay_steps ({total}) counts the warmup too, so it must be "
                         f"more than warmup_steps ({warmup})")
    warm = linear_schedule(init_value, peak, warmup)
    decay = cosine_decay_schedule(peak, total - warmup, end / peak if peak else 0.0, exponent)
    return lambda step: warm(step) if step < warmup else decay(step - warmup)


warmup_cosine_decay = warmup_cosine_decay_schedule  # the shorter name


def piecewise_constant_schedule(init_value, boundaries_and_scales=None):
    """init_value, multiplied by each scale from its boundary step on
    (optax.piecewise_constant_schedule: {boundary: scale}).

    >>> s = piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.1})
    >>> s(9), s(10), s(25)
    (1.0, 0.5, 0.05)
    """
    op = "piecewise_constant_schedule"
    init = _hyperparameter(op, "init_value", init_value)
    pairs = sorted((_index(op, "a boundary", b), _hyperparameter(op, "a scale", scale))
                   for b, scale in (boundaries_and_scales or {}).items())
    if any(scale < 0.0 for _, scale in pairs):
        raise ValueError(f"{op}: the scales must be >= 0 (as optax's), got {pairs}")

    def schedule(step):
        value = init
        for boundary, scale in pairs:
            if step >= boundary:
                value *= scale
        return value
    return schedule


# ---- Clipping gradients ------------------------------------------------------------------

def global_norm(tree):
    """The 2-norm of all the tree's leaves together, as one vector (optax.global_norm)."""
    leaves = [_as_tensor(leaf, "global_norm") for leaf in tree_leaves(tree)]
    return sqrt(_sum(((leaf * leaf).sum() for leaf in leaves), _constant(0.0))) if leaves \
        else Tensor(0.0)


def clip_by_global_norm(grads, max_norm):
    """grads (a tree) scaled so that their global norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_ computes it but without changing anything: each leaf times
    min(1, max_norm / (norm + 1e-6)). An inf or nan norm makes the gradients nan (0 * inf), as
    PyTorch's with error_if_nonfinite=False. The norm itself is global_norm(grads).

    >>> clip_by_global_norm({"w": Tensor([3.0, 4.0])}, 1.0)["w"].tolist()
    [0.599999880000024, 0.799999840000032]
    """
    max_norm = _nonnegative("clip_by_global_norm", "max_norm", max_norm)
    if isinstance(grads, GradNode):
        raise TypeError("clip_by_global_norm: give the gradients as a tree, g.wrt(params)")
    coefficient = minimum(max_norm / (global_norm(grads) + 1e-6), 1.0)
    return tree_map(lambda g: _as_tensor(g, "clip_by_global_norm") * coefficient, grads)


def clip_by_value(grads, low, high=None):
    """Each gradient clipped to [low, high] (to [-low, low] when high is None, as
    torch.nn.utils.clip_grad_value_), a tree in and a tree out."""
    if isinstance(grads, GradNode):
        raise TypeError("clip_by_value: give the gradients as a tree, g.wrt(params)")
    if high is None:
        low, high = -_nonnegative("clip_by_value", "the clip value", low), low
    return tree_map(lambda g: clip(g, low, high), grads)


def _refuse_trace(op):
    """A stateful update inside a traced function would freeze its state into the program."""
    if _current_trace() is not None:
        raise TraceError(f"{op} inside a traced function: the optimizer's state would be frozen "
                         f"into the program. Trace (or jit) the gradient, and update outside, "
                         f"or use rax.sgd, which is traced")


def _params_and_grads(op, params, grads):
    """(keys, param, gradient) for each leaf of params, the two as tensors of equal shapes.

    grads is a gradient graph (a GradNode) or a tree shaped like params.
    """
    items = _leaves_with_keys(params, op, "params")
    if isinstance(grads, GradNode):  # as grads.wrt(params), without building the tree
        tensors = [p for _, p in items if isinstance(p, Tensor)]
        if tensors and not any(p in grads for p in tensors):
            raise ValueError(f"{op}: no tensor of params is in the gradient graph, so every "
                             f"gradient would be zero; was the loss computed from these params?")
        grad_leaves = [grads._of_leaf(p) for _, p in items]
    else:
        grad_leaves = _matching_leaves(op, params, grads, "params", "grads")
    leaves = []
    for (keys, p), g in zip(items, grad_leaves):
        if _is_bool(p):
            raise TypeError(f"{op}: {_path('params', keys)} is a bool tensor, which is no "
                            f"parameter (no gradient flows to bools): keep masks out of the "
                            f"params, and pass them to the model by closure or as an argument")
        if _is_bool(g):
            raise TypeError(f"{op}: the gradient of {_path('params', keys)} is a bool tensor")
        if iscomplexobj(p) or iscomplexobj(g):
            raise TypeError(f"{op}: {_path('params', keys)} or its gradient is complex128: "
                            f"optimizers take real params (rax's gradient of z = x + iy is "
                            f"df/dx - i df/dy, JAX's, so descent steps along its conjugate); "
                            f"keep x and y as float params, or step z - lr * conj(g) yourself")
        p, g = _as_tensor(p, op), _as_tensor(g, op)
        if p.shape != g.shape:
            raise ValueError(f"{op}: {_path('params', keys)} has shape {p.shape}, "
                             f"but its gradient has shape {g.shape}")
        leaves.append((keys, p, g))
    return leaves


def _new_params(params, new_data):
    """params with each leaf replaced by new data: tensors become fresh leaves, numbers stay
    numbers."""
    new_leaves = [_leaf(data, p.shape) if isinstance(p, Tensor) else data
                  for p, data in zip(tree_leaves(params), new_data)]
    return _rebuild(params, iter(new_leaves))


def _gradient_step_start(p, g, maximize, weight_decay):
    """The first two steps of torch's SGD and Adam: d = -g if maximize, then
    d = d + weight_decay * p. Returns d's data."""
    d = g.data
    if maximize:
        d = elementwise(operator.neg, (d,), p.ndim)
    if weight_decay:
        d = elementwise(lambda d, p: d + weight_decay * p, (d, p.data), p.ndim)
    return d


# Hyperparameters are checked and stored as Python floats, so that nothing but floats ever
# reaches tensor data (a 0-d Tensor or a NumPy scalar as lr would end up inside .data).
# bool is refused although Python counts it as a number: SGD(lr=True) is a slip. nan is
# refused everywhere: it fails every range check and would only make every param nan.
def _hyperparameter(op, name, value):
    """value, a real number, as a Python float; else a TypeError or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r:.80} "
                        f"({type(value).__name__})")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{op}: {name} is too large for a float "
                         f"(beyond 1.8e308)") from None
    if value != value:
        raise ValueError(f"{op}: {name} must be a number, got nan")
    return value


def _nonnegative(op, name, value):
    """value as a float >= 0 (inf allowed), as PyTorch checks lr, momentum, weight_decay."""
    value = _hyperparameter(op, name, value)
    if value < 0.0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value}")
    return value


def _learning_rate(op, lr):
    """lr as a float >= 0, or a schedule: a function of the step count (see _scheduled)."""
    return lr if callable(lr) else _nonnegative(op, "lr", lr)


def _scheduled(op, lr, step):
    """The learning rate for the update after `step` updates: lr itself, or lr(step)."""
    if not callable(lr):
        return lr
    value = lr(step)
    if _has_tolist(value) and getattr(value, "shape", None) == ():  # a 0-d array (optax's)
        value = value.tolist()
    return _nonnegative(op, f"lr({step}), the schedule's value", value)


def _flag(op, name, value):
    """value, which must be True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r:.80} "
                        f"({type(value).__name__})")
    return value


def _betas(op, betas):
    """Adam's (beta1, beta2) as a pair of floats in [0, 1)."""
    if not isinstance(betas, (tuple, list)):
        raise TypeError(f"{op}: betas must be a pair (beta1, beta2) of real numbers, got "
                        f"{betas!r:.80} ({type(betas).__name__})")
    if len(betas) != 2:
        raise ValueError(f"{op}: betas must be a pair (beta1, beta2), got {betas!r:.80} "
                         f"({len(betas)} values)")
    betas = tuple(_hyperparameter(op, f"betas[{i}]", beta) for i, beta in enumerate(betas))
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{op}: betas[{i}] must be in [0, 1), got {beta}")
    return betas


# An optimizer's state: the number of updates taken, and after the first update, buffers for
# each leaf of params (SGD's momentum buffer; Adam's two moments) kept in a dict keyed by the
# leaf's path in the tree (its keys from _leaves_with_keys). Each update checks that the
# params have exactly these paths, with the shapes of their buffers, so that a state is never
# applied to another leaf. `opt.state` shows it as a tree shaped like params (the skeleton:
# params with every leaf None), using PyTorch's names; `state=` takes such a tree back.
def _state_of_leaves(op, leaves, buffers):
    """The buffers of each leaf of params, in order (None for each before the first update),
    or a ValueError naming the first leaf that does not fit the optimizer's state."""
    if buffers is None:
        return [None] * len(leaves)
    lacking = [keys for keys in buffers if keys not in {keys for keys, _, _ in leaves}]
    for keys, p, _ in leaves:
        if keys not in buffers:
            instead = f" ({_path('params', lacking[0])} among them, which params lacks)" \
                if lacking else ""
            raise ValueError(f"{op}: {_path('params', keys)} has no state in the optimizer, "
                             f"whose state is for other leaves{instead}; use a new optimizer "
                             f"for new params")
        shape = buffers[keys][0].shape
        if shape != p.shape:
            raise ValueError(f"{op}: {_path('params', keys)} has shape {p.shape}, but the "
                             f"optimizer's state for it has shape {shape}")
    if lacking:
        raise ValueError(f"{op}: the optimizer's state is for other leaves: it has "
                         f"{_path('params', lacking[0])}, which params lacks")
    return [buffers[keys] for keys, _, _ in leaves]


def _skeleton(params):
    """params with every leaf None: the structure in which opt.state shows the buffers."""
    return _rebuild(params, itertools.repeat(None))


def _state_tree(step, skeleton, buffers, names):
    """An optimizer's state as a tree: {"step": step, names[i]: tree of the i-th buffers}."""
    state = {"step": step}
    if buffers is not None:
        order = [keys for keys, _ in _leaves_with_keys(skeleton)]
        for i, name in enumerate(names):
            state[name] = _rebuild(skeleton, iter([buffers[keys][i] for keys in order]))
    return state


def _read_state(op, state, names):
    """(step, skeleton, buffers) from a `state=` argument shaped like opt.state, checked;
    (0, None, None) for None. Buffers are there only if the state has trees for all names."""
    if state is None:
        return 0, None, None
    if not isinstance(state, dict):
        raise TypeError(f"{op}: state must be a dict as opt.state gives, got "
                        f"{type(state).__name__}")
    expected = ("step",) + names
    for key in state:
        if key not in expected:
            raise ValueError(f"{op}: state has the key {key!r:.80}; an {op} state has only "
                             f"the keys {', '.join(map(repr, expected))}")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{op}: state['step'] must be an int, got {step!r:.80}")
    if step < 0:
        raise ValueError(f"{op}: state['step'] must be >= 0, got {step}")
    given = [name for name in names if name in state]
    if not given:
        return int(step), None, None
    if len(given) < len(names):
        missing = [name for name in names if name not in state][0]
        raise ValueError(f"{op}: state has {given[0]!r} but not {missing!r}")
    if step == 0:
        raise ValueError(f"{op}: state has buffers ({', '.join(map(repr, names))}) but "
                         f"state['step'] is 0, and only an update makes them")
    first = names[0]
    columns = [_leaves_with_keys(state[name], op, f"state[{name!r}]") for name in names]
    for name in names[1:]:
        difference = _structure_difference(state[first], state[name], "state",
                                           (f"state[{first!r}]", f"state[{name!r}]"))
        if difference:
            raise ValueError(f"{op}: state[{first!r}] and state[{name!r}] differ: "
                             f"{difference}")
    buffers = {}
    for row in zip(*columns):
        keys = row[0][0]
        for name, (_, leaf) in zip(names, row):
            if not isinstance(leaf, Tensor):
                raise TypeError(f"{op}: {_path(f'state[{name!r}]', keys)} must be a Tensor, "
                                f"got {leaf!r:.80} ({type(leaf).__name__})")
            if leaf.shape != row[0][1].shape:
                raise ValueError(f"{op}: {_path(f'state[{name!r}]', keys)} has shape "
                                 f"{leaf.shape}, but {_path(f'state[{first!r}]', keys)} has "
                                 f"shape {row[0][1].shape}")
        buffers[keys] = tuple(_leaf(leaf.data, leaf.shape) for _, leaf in row)
    return int(step), _skeleton(state[first]), buffers


# ---- 7c. minimize: quasi-Newton methods for small smooth problems ---------------------------
#
# For curve fitting and other small smooth problems, a quasi-Newton method converges in tens
# of steps where Adam takes thousands. minimize flattens x0 (any tree of tensors) into one
# vector with ravel_pytree, and takes the value and gradient from rax. BFGS keeps an
# approximation of the inverse Hessian (n x n); L-BFGS keeps only the last m steps, for
# larger n. Both step along a search direction to a point that satisfies the strong Wolfe
# conditions, found as SciPy and L-BFGS-B find it: by the search of More and Thuente
# (MINPACK-2's dcsrch), and for BFGS, where that gives up, by Nocedal and Wright's
# (Algorithms 3.5 and 3.6, SciPy's line_search_wolfe2). So rax takes SciPy's iterations:
# on the Rosenbrock function from 30 random starts, the same number as SciPy, every time.
# The vectors here are plain lists of floats: the algebra is tiny next to the function's
# evaluations.

class OptimizeResult(dict):
    """What minimize returns, as scipy.optimize.OptimizeResult: a dict whose keys are also
    attributes (res.x, res.fun, res.jac, res.nit, res.nfev, res.njev, res.success,
    res.status, res.message, and res.hess_inv for BFGS)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self):
        return "OptimizeResult(" + ", ".join(f"{k}={v!r:.60}" for k, v in self.items()) + ")"


_MINIMIZE_MESSAGES = {0: "Optimization terminated successfully.",
                      1: "Maximum number of iterations has been exceeded.",
                      2: "Desired error not necessarily achieved due to precision loss.",
                      3: "NaN result encountered.",
                      99: "`callback` raised `StopIteration`."}


def minimize(fun, x0, args=(), method="BFGS", tol=None, maxiter=None, options=None,
             callback=None, jit=False, jac=None):
    """The x that minimizes fun(x, *args), from x0, as scipy.optimize.minimize with method
    "BFGS" or "L-BFGS" (L-BFGS-B without bounds); gradients by rax.

    x0 is a tensor or any tree of them (the result's x has its structure); fun returns a
    tensor with one element. tol is the gradient tolerance (the largest |gradient| at which
    to stop, 1e-5 by default, as SciPy's gtol); maxiter is 200 n for BFGS and 15000 for
    L-BFGS by default; options may give "gtol", "maxiter", and for L-BFGS "m" (the history,
    10) and "ftol" (stop when the relative decrease of f is below it, 2.2e-9 as SciPy's).
    callback(xk) is called after each iteration with the params. With jit=True the value
    and gradient are compiled once (rax.jit). A value or gradient at x0 that is not finite
    is a ValueError; a line search that fails ends the run with success False. (jac, as
    SciPy's, may only be None or True: the gradient is rax's.)

    >>> res = minimize(lambda p: ((p["a"] - 3.0) ** 2).sum(), {"a": Tensor([0.0, 1.0])})
    >>> res.success, [f"{v:.6f}" for v in res.x["a"].tolist()], res.nit, res.message
    (True, ['3.000000', '3.000000'], 3, 'Optimization terminated successfully.')
    """
    if jac not in (None, True):
        raise TypeError("minimize: rax computes the gradient itself; leave jac out")
    method = method.upper().replace("_", "-") if isinstance(method, str) else method
    if method not in ("BFGS", "L-BFGS", "L-BFGS-B"):
        raise ValueError(f"minimize: method must be 'BFGS' or 'L-BFGS', got {method!r}")
    _check_function("minimize", fun)
    if callback is not None:
        _check_function("minimize", callback)
    flat, unravel = ravel_pytree(x0)
    settings = _minimize_settings(method, tol, maxiter, options, flat.size)
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    problem = _Problem(fun, unravel, args, jit, flat.size)
    x = [float(v) for v in flat.tolist()]
    f, g = problem(x)
    if not (math.isfinite(f) and all(map(math.isfinite, g))):
        raise ValueError(f"minimize: fun or its gradient is not finite at x0 (value {f!r})")
    run = _bfgs if method == "BFGS" else _lbfgs
    x, f, g, nit, status, extra = run(problem, x, f, g, settings, callback)
    result = OptimizeResult(x=_fresh_tree(unravel, x), fun=f, jac=_fresh_tree(unravel, g),
                            nit=nit, nfev=problem.count,
                            njev=problem.count, status=status, success=status == 0,
                            message=_MINIMIZE_MESSAGES[status])
    result.update(extra)
    return result


def _minimize_settings(method, tol, maxiter, options, n):
    """{"gtol", "maxiter", "m", "ftol"} from minimize's arguments, checked."""
    options = dict(options or {})
    options.pop("disp", None)  # SciPy's printing: rax prints nothing
    if "maxcor" in options:  # L-BFGS-B's name for the history m
        options["m"] = options.pop("maxcor")
    unknown = set(options) - {"gtol", "maxiter", "m", "ftol"}
    if unknown:
        raise ValueError(f"minimize: unknown options {sorted(unknown)}; there are 'gtol', "
                         f"'maxiter', 'm' (or 'maxcor'), 'ftol' and 'disp'")
    bfgs = method == "BFGS"
    settings = {"gtol": 1e-5 if tol is None else tol, "ftol": 2.220446049250313e-09,
                "maxiter": (200 * n if bfgs else 15000) if maxiter is None else maxiter, "m": 10}
    if tol is not None and not bfgs:
        settings["ftol"] = tol
    settings.update(options)
    for name in ("gtol", "ftol"):
        settings[name] = _nonnegative("minimize", name, settings[name])
    settings["maxiter"] = _int("minimize", "maxiter", settings["maxiter"], 0)
    settings["m"] = _int("minimize", "m", settings["m"], 1)
    return settings


class _Problem:
    """fun's value and gradient at a point given as a list of floats (counted)."""

    def __init__(self, fun, unravel, args, jit_it, n):
        def flat_fun(flat, *args):
            out = fun(unravel(flat), *args)
            if not isinstance(out, Tensor) or out.size != 1:
                raise TypeError(f"minimize: fun must return a tensor with one element, got "
                                f"{_dtype_text(out) if isinstance(out, Tensor) else out!r:.60}")
            return out.reshape(())
        self.value_and_grad = value_and_grad(flat_fun)
        if jit_it:
            self.value_and_grad = jit(self.value_and_grad)
        self.args, self.n, self.count, self.unravel = args, n, 0, unravel

    def __call__(self, x):
        self.count += 1
        value, gradient = self.value_and_grad(_leaf(list(x), (self.n,)), *self.args)
        return float(value), [float(v) for v in gradient.tolist()]


def _dot(a, b):
    return math.fsum(map(operator.mul, a, b))


def _step_along(x, alpha, p):
    """x + alpha p, for lists of floats."""
    return [xi + alpha * pi for xi, pi in zip(x, p)]


def _evaluator(problem, x, p):
    """at(alpha) -> (f, g, g.p) at x + alpha p, each point evaluated once."""
    seen = {}

    def at(alpha):
        if alpha not in seen:
            f, g = problem(_step_along(x, alpha, p))
            seen[alpha] = (f, g, _dot(g, p))
        return seen[alpha]
    return at


def _line_search(problem, x, p, f0, g0, old_f0, lbfgs_first=None):
    """(alpha, f, g) at a step along p that satisfies the strong Wolfe conditions, or None.
    BFGS's, as SciPy's: More and Thuente's search first, then Nocedal and Wright's. L-BFGS's,
    as L-BFGS-B's: More and Thuente's with c1 = 1e-3 and xtol = 0.1, its warnings taken,
    at most 20 evaluations, the first step lbfgs_first (1 after the first iteration)."""
    at, slope0 = _evaluator(problem, x, p), _dot(g0, p)
    if lbfgs_first is not None:
        step = _more_thuente(at, f0, slope0, lbfgs_first, 1e-3, 0.9, 0.1, 0.0, 1e10, 20,
                             warnings=True)
        return None if step is None else (step,) + at(step)[:2]
    first = 1.0
    if old_f0 is not None and slope0 != 0.0:
        first = _min(1.0, 1.01 * 2.0 * (f0 - old_f0) / slope0)
    first = first if first >= 0.0 else 1.0
    step = _more_thuente(at, f0, slope0, first, 1e-4, 0.9, 1e-14, 1e-100, 1e100, 100)
    if step is not None:
        return (step,) + at(step)[:2]
    return _wolfe_search(at, slope0, f0, old_f0)


def _wolfe_search(at, slope0, f0, old_f0, alpha1=None, c1=1e-4, c2=0.9):
    """A step alpha along p from x that satisfies the strong Wolfe conditions, f(x + alpha p)
    <= f0 + c1 alpha g0.p and |g(x + alpha p).p| <= c2 |g0.p| (Nocedal and Wright, Algorithm
    3.5, as SciPy's scalar_search_wolfe2): (alpha, f, g) there, or None if none is found in
    10 tries. The first try is alpha1, or 1.01 times the step that would repeat the last
    decrease (SciPy's), at most 1. at(alpha) -> (f, g, slope) (see _evaluator)."""
    if alpha1 is None:
        alpha1 = 1.0
        if old_f0 is not None and slope0 != 0.0:
            alpha1 = _min(1.0, 1.01 * 2.0 * (f0 - old_f0) / slope0)
        if not alpha1 >= 0.0:
            alpha1 = 1.0
    alpha0, f_prev, slope_prev = 0.0, f0, slope0
    for i in range(10):
        if alpha1 == 0.0:
            return None  # rounding errors prevent the search from converging
        f1, g1, slope1 = at(alpha1)
        if f1 > f0 + c1 * alpha1 * slope0 or (f1 >= f_prev and i > 0):
            found = _zoom(at, alpha0, alpha1, f_prev, f1, slope_prev, f0, slope0, c1, c2)
            break
        if _abs(slope1) <= -c2 * slope0:
            found = alpha1
            break
        if slope1 >= 0.0:
            found = _zoom(at, alpha1, alpha0, f1, f_prev, slope1, f0, slope0, c1, c2)
            break
        alpha0, f_prev, slope_prev, alpha1 = alpha1, f1, slope1, 2.0 * alpha1
    else:
        found = None
    return None if found is None else (found,) + at(found)[:2]


def _more_thuente(at, f0, slope0, step, c1, c2, xtol, lo, hi, maxiter, warnings=False):
    """The line search of More and Thuente (MINPACK-2's dcsrch, which SciPy's BFGS tries
    first and L-BFGS-B uses): a step with f <= f0 + c1 step slope0 and |slope| <= c2
    |slope0|, by safeguarded cubic and quadratic steps (_more_thuente_step) in an interval
    that brackets one; step in [lo, hi]. Where it stops with a warning (rounding errors, the
    interval narrower than xtol, a bound reached), it gives that step if `warnings` (as
    L-BFGS-B takes it), else None (SciPy's BFGS then tries Nocedal and Wright's search);
    None too after maxiter steps. at(step) -> (f, g, slope) there."""
    test = c1 * slope0
    width, width1, bracketed, stage = hi - lo, 2.0 * (hi - lo), False, 1
    x = y = (0.0, f0, slope0)  # the ends of the interval: (step, f, slope)
    low, high = 0.0, step + 4.0 * step
    for _ in range(maxiter):
        f, _, g = at(step)
        if stage == 1 and f <= f0 + step * test and g >= _min(c1, c2) * slope0:
            stage = 2
        if f <= f0 + step * test and _abs(g) <= -c2 * slope0:
            return step
        if (bracketed and (step <= low or step >= high or high - low <= xtol * high)) or (
                step == hi and f <= f0 + step * test and g <= test) or (
                step == lo and (f > f0 + step * test or g >= test)):
            return step if warnings else None  # rounding errors, xtol, or a bound reached
        if stage == 1 and f <= x[1] and f > f0 + step * test:  # on the modified function
            shift = lambda p: (p[0], p[1] - p[0] * test, p[2] - test)  # noqa: E731
            x, y, bracketed, step = _more_thuente_step(shift(x), shift(y), shift(
                (step, f, g)), bracketed, low, high)
            x, y = ((p[0], p[1] + p[0] * test, p[2] + test) for p in (x, y))
        else:
            x, y, bracketed, step = _more_thuente_step(x, y, (step, f, g), bracketed, low,
                                                       high)
        if bracketed:
            if _abs(y[0] - x[0]) >= 0.66 * width1:
                step = x[0] + 0.5 * (y[0] - x[0])
            width1, width = width, _abs(y[0] - x[0])
            low, high = _min(x[0], y[0]), _max(x[0], y[0])
        else:
            low, high = step + 1.1 * (step - x[0]), step + 4.0 * (step - x[0])
        step = _min(_max(step, lo), hi)
        if bracketed and (step <= low or step >= high or high - low <= xtol * high):
            step = x[0]
    return None


def _more_thuente_step(x, y, t, bracketed, low, high):
    """MINPACK-2's dcstep: the next trial step from the interval's ends x and y (x the best
    so far) and the trial t, each (step, f, slope); and the interval updated."""
    (sx, fx, dx), (sp, fp, dp) = x, t
    sign = dp * (dx / _abs(dx))
    if fp > fx:  # a higher value: the minimum is bracketed
        c = _cubic_step(sx, fx, dx, sp, fp, dp, sp < sx)
        q = sx + ((dx / ((fx - fp) / (sp - sx) + dx)) / 2.0) * (sp - sx)
        new = c if _abs(c - sx) < _abs(q - sx) else c + (q - c) / 2.0
        bracketed = True
    elif sign < 0:  # the slopes change sign: bracketed
        c = _cubic_step(sp, fp, dp, sx, fx, dx, sp > sx)
        q = sp + (dp / (dp - dx)) * (sx - sp)
        new, bracketed = (c if _abs(c - sp) > _abs(q - sp) else q), True
    elif _abs(dp) < _abs(dx):  # a lower value and a smaller slope of the same sign
        c = _cubic_step(sp, fp, dp, sx, fx, dx, sp > sx, beyond=(low, high))
        q = sp + (dp / (dp - dx)) * (sx - sp)
        if bracketed:
            new = c if _abs(c - sp) < _abs(q - sp) else q
            new = _min(sp + 0.66 * (y[0] - sp), new) if sp > sx else \
                _max(sp + 0.66 * (y[0] - sp), new)
        else:
            new = _min(high, _max(low, c if _abs(c - sp) > _abs(q - sp) else q))
    elif bracketed:  # a lower value, the slope no smaller: the cubic through y
        new = _cubic_step(sp, fp, dp, y[0], y[1], y[2], sp > y[0])
    else:
        new = high if sp > sx else low
    if fp > fx:
        y = t
    else:
        if sign < 0:
            y = x
        x = t
    return x, y, bracketed, new


def _cubic_step(a, fa, da, b, fb, db, flip, beyond=None):
    """The minimizer of the cubic through (a, fa, da) and (b, fb, db), as dcstep writes it
    (gamma's sign flipped when `flip`); with `beyond` = (low, high), the case where it may
    lie beyond b: then low or high when the cubic has no minimum that way."""
    theta = 3.0 * (fb - fa) / (a - b) + db + da
    s = _max(_abs(theta), _abs(db), _abs(da))
    gamma = s * math.sqrt(_max(0.0, (theta / s) ** 2 - (db / s) * (da / s)))
    gamma = -gamma if flip else gamma
    if beyond is None:
        p, q = (gamma - da) + theta, ((gamma - da) + gamma) + db
        return a + (p / q) * (b - a)
    p, q = (gamma - da) + theta, (gamma + (db - da)) + gamma
    r = p / q
    if r < 0.0 and gamma != 0.0:
        return a + r * (b - a)
    return beyond[1] if flip else beyond[0]


def _zoom(at, lo, hi, f_lo, f_hi, slope_lo, f0, slope0, c1, c2):
    """Algorithm 3.6 of Nocedal and Wright, as SciPy's _zoom: narrow [lo, hi] (which holds a
    strong Wolfe point) by cubic, else quadratic, else halving steps; None after 10."""
    recent, f_recent = 0.0, f0
    for i in range(11):
        width = hi - lo
        low, high = (hi, lo) if width < 0 else (lo, hi)
        trial = _cubic_min(lo, f_lo, slope_lo, hi, f_hi, recent, f_recent) if i else None
        if trial is None or trial > high - 0.2 * width or trial < low + 0.2 * width:
            trial = _quadratic_min(lo, f_lo, slope_lo, hi, f_hi)
            if trial is None or trial > high - 0.1 * width or trial < low + 0.1 * width:
                trial = lo + 0.5 * width
        f_trial, _, slope_trial = at(trial)
        if f_trial > f0 + c1 * trial * slope0 or f_trial >= f_lo:
            recent, f_recent, hi, f_hi = hi, f_hi, trial, f_trial
            continue
        if _abs(slope_trial) <= -c2 * slope0:
            return trial
        if slope_trial * (hi - lo) >= 0.0:
            recent, f_recent, hi, f_hi = hi, f_hi, lo, f_lo
        else:
            recent, f_recent = lo, f_lo
        lo, f_lo, slope_lo = trial, f_trial, slope_trial
    return None


def _cubic_min(a, fa, fpa, b, fb, c, fc):
    """The minimizer of the cubic through (a, fa) with slope fpa, (b, fb) and (c, fc)."""
    try:
        db, dc = b - a, c - a
        denominator = (db * dc) ** 2 * (db - dc)
        u, v = fb - fa - fpa * db, fc - fa - fpa * dc
        big_a = (dc ** 2 * u - db ** 2 * v) / denominator
        big_b = (-dc ** 3 * u + db ** 3 * v) / denominator
        x = a + (-big_b + math.sqrt(big_b * big_b - 3.0 * big_a * fpa)) / (3.0 * big_a)
    except (ArithmeticError, ValueError):  # a zero denominator, a negative radical
        return None
    return x if math.isfinite(x) else None


def _quadratic_min(a, fa, fpa, b, fb):
    """The minimizer of the quadratic through (a, fa) with slope fpa, and (b, fb)."""
    try:
        db = b - a
        x = a - fpa / (2.0 * ((fb - fa - fpa * db) / (db * db)))
    except ArithmeticError:
        return None
    return x if math.isfinite(x) else None


def _bfgs(problem, x, f, g, settings, callback):
    """BFGS as SciPy's: H (the inverse Hessian's estimate) starts at I; after a step s with
    gradient change y, H = (I - r s y^T) H (I - r y s^T) + r s s^T, r = 1 / y.s."""
    n, k, status = len(x), 0, 0
    hessian_inverse = [[float(i == j) for j in range(n)] for i in range(n)]
    old_f = f + math.sqrt(_dot(g, g)) / 2.0
    while _max(map(_abs, g), default=0.0) > settings["gtol"] and k < settings["maxiter"]:
        p = [-_dot(row, g) for row in hessian_inverse]
        step = _line_search(problem, x, p, f, g, old_f)
        if step is None:
            status = 2
            break
        alpha, f_new, g_new = step
        s = [alpha * pi for pi in p]
        x = [xi + si for xi, si in zip(x, s)]
        y = [b - a for a, b in zip(g, g_new)]
        old_f, f, g, k = f, f_new, g_new, k + 1
        if _call_back(callback, problem, x, f):
            status = 99
            break
        if _max(map(_abs, g), default=0.0) <= settings["gtol"]:
            break
        if not math.isfinite(f):
            status = 2
            break
        r = _dot(y, s)
        r = 1000.0 if r == 0.0 else 1.0 / r
        hy = [_dot(row, y) for row in hessian_inverse]  # H y (H stays symmetric)
        yhy = _dot(y, hy)
        hessian_inverse = [[h + r * r * yhy * si * sj + r * si * sj - r * (hi * sj + si * hj)
                            for h, sj, hj in zip(row, s, hy)]
                           for row, si, hi in zip(hessian_inverse, s, hy)]
    if status == 0 and k >= settings["maxiter"] and _max(map(_abs, g), default=0.0) > \
            settings["gtol"]:
        status = 1
    if status == 0 and (f != f or any(v != v for v in g)):
        status = 3
    return x, f, g, k, status, {"hess_inv": _leaf(hessian_inverse, (n, n))}


def _problem_params(problem, x):
    """The params tree at the flat point x (for a callback)."""
    return _fresh_tree(problem.unravel, x)


def _call_back(callback, problem, x, f):
    """Call the user's callback after an iteration, as SciPy does: with the params, or with
    an OptimizeResult(x, fun) if its parameter is named intermediate_result; True (stop) if
    it raises StopIteration."""
    if callback is None:
        return False
    params = _problem_params(problem, x)
    try:
        names = list(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        names = []
    try:
        callback(OptimizeResult(x=params, fun=f) if names == ["intermediate_result"]
                 else params)
    except StopIteration:
        return True
    return False


def _fresh_tree(unravel, x):
    """The tree that the flat list x stands for, its tensors fresh leaves."""
    return tree_map(lambda t: _leaf(t.data, t.shape, t.dtype) if isinstance(t, Tensor) else t,
                    unravel(_leaf(list(x), (len(x),))))


def _lbfgs(problem, x, f, g, settings, callback):
    """L-BFGS: the direction from the last m pairs (s, y) by the two-loop recursion
    (Nocedal and Wright, Algorithm 7.4) with H0 = (s.y / y.y) I; the first step, and one
    after a failed line search, along -g with length 1 / |g| at first, as L-BFGS-B's. Stops
    when max |g| <= gtol, or the relative decrease of f is at most ftol."""
    pairs, k, status, m = [], 0, 0, settings["m"]
    while _max(map(_abs, g), default=0.0) > settings["gtol"] and k < settings["maxiter"]:
        p = _two_loop(g, pairs)
        first = 1.0 if pairs else _min(1.0 / _max(math.sqrt(_dot(g, g)), 1e-300), 1e10)
        step = _line_search(problem, x, p, f, g, None, lbfgs_first=first)
        if step is None:
            if pairs:  # start again from steepest descent, once, as L-BFGS-B does
                pairs = []
                continue
            status = 2
            break
        alpha, f_new, g_new = step
        s = [alpha * pi for pi in p]
        y = [b - a for a, b in zip(g, g_new)]
        x = [xi + si for xi, si in zip(x, s)]
        decrease, scale = f - f_new, _max(_abs(f), _abs(f_new), 1.0)
        f, g, k = f_new, g_new, k + 1
        if _call_back(callback, problem, x, f):
            status = 99
            break
        if _dot(s, y) > 2.220446049250313e-16 * _dot(y, y):  # else the pair is skipped
            pairs = (pairs + [(s, y, 1.0 / _dot(s, y))])[-m:]
        if not math.isfinite(f):
            status = 2
            break
        if decrease <= settings["ftol"] * scale:
            break
    if status == 0 and k >= settings["maxiter"] and _max(map(_abs, g), default=0.0) > \
            settings["gtol"]:
        status = 1
    return x, f, g, k, status, {}


def _two_loop(g, pairs):
    """-H g for the L-BFGS estimate H of the inverse Hessian from the (s, y, 1/s.y) pairs."""
    q, alphas = list(g), []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        alphas.append(a)
        q = [qi - a * yi for qi, yi in zip(q, y)]
    if pairs:
        s, y, _ = pairs[-1]
        gamma = _dot(s, y) / _dot(y, y)
        q = [gamma * qi for qi in q]
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * _dot(y, q)
        q = [qi + (a - b) * si for qi, si in zip(q, s)]
    return [-qi for qi in q]


# ---- 7b. Saving ----------------------------------------------------------------------------
#
# save writes a tree as JSON that any JSON reader accepts and a person can read:
#
#     {"rax": 1, "tree": {"dict": {
#       "b": {"shape": [2], "data": [0.5, "-inf"]},
#       "w": [{"shape": [], "data": -0.0}, 3, {"tuple": [1.5, "nan"]}]
#     }}}
#
# "rax" is the version of the layout. A list is a JSON array; a dict is {"dict": {...}} (keys
# are strings), a tuple {"tuple": [...]} (a namedtuple comes back as a plain tuple), a tensor
# {"shape": [...], "data": nested lists} (its values only: it comes back as a leaf; a bool
# tensor says so, {"shape": [...], "dtype": "bool", "data": [true, ...]}, and a complex one
# too, {"shape": [2], "dtype": "complex128", "data": [[1.0, -0.0], [0.5, "inf"]]}: each
# element the pair [real part, imaginary part], each part a float as below, so that both
# come back exact; a complex number is {"complex": [re, im]}). Numbers
# stay numbers: true/false for bools, JSON integers for ints, and floats as Python's repr,
# which reads back as the very same float (-0.0 included). JSON has no inf or nan, so they
# are the strings "inf", "-inf", "nan" (the bits 0x7ff8000000000000), "-nan" (the same with
# the sign bit set, what x86 gives for inf - inf), and any other nan "nan:" followed by its
# 16 hexadecimal bits. load reads only this layout, with Python's json: nothing is executed.
# Trees nest at most _MAX_SAVE_DEPTH containers deep, so that reading the file back stays
# far from Python's recursion limit. save to a path writes a temporary file beside it and
# renames it over the old one (os.replace, atomic): killed at any moment, it leaves either
# the old file or the new one, whole.

_SAVE_VERSION = 1
_MAX_SAVE_DEPTH = 100
_NAN_NAMES = {"7ff8000000000000": "nan", "fff8000000000000": "-nan"}
_NAN_BITS = {name: bits for bits, name in _NAN_NAMES.items()}


def save(file, tree):
    """Write a tree of tensors and numbers (params, an optimizer's state) to a JSON file.

    Every float comes back from load exactly, inf, nan and -0.0 included; tensors come back
    as leaves with their values and shape, numbers as numbers, tuples as tuples. file is a
    path or an open text file. Dict keys must be strings. The whole text is made before the
    file is opened, so a tree that cannot be saved leaves an existing file as it was; and a
    path is written atomically (a temporary file, flushed to disk, then renamed over it),
    so a save that is killed or fails leaves the old file whole.

    >>> import io
    >>> f = io.StringIO()
    >>> save(f, {"w": Tensor([1.0, -math.inf]), "step": 3})
    >>> print(f.getvalue(), end="")
    {"rax": 1, "tree": {"dict": {
      "w": {"shape": [2], "data": [1.0, "-inf"]},
      "step": 3
    }}}
    >>> _ = f.seek(0)
    >>> load(f)
    {'w': Tensor([1.0, -inf]), 'step': 3}
    """
    is_path = isinstance(file, (str, bytes, os.PathLike))
    if not is_path and not callable(getattr(file, "write", None)):
        raise TypeError(f"save: file must be a path or an open text file, got {file!r:.80}")
    text = f'{{"rax": {_SAVE_VERSION}, "tree": {_tree_to_json(tree, (), set())}}}\n'
    if is_path:
        _write_atomically(os.fsdecode(file), text)
    else:
        file.write(text)


def _write_atomically(path, text):
    """Write text to path through a temporary file in the same folder, renamed over path
    once it is on disk; on any failure the temporary file is removed, path is untouched."""
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def load(file):
    """Read a tree written by save: tensors come back as leaves, every float exactly.

    Safe on a file from anywhere: it is read as JSON and nothing in it is executed. A file
    that is not what save writes is a ValueError naming where (``tree['w']: "data" has
    shape (2,) but "shape" says (3,)``). file is a path or an open text file.
    """
    is_path = isinstance(file, (str, bytes, os.PathLike))
    if not is_path and not callable(getattr(file, "read", None)):
        raise TypeError(f"load: file must be a path or an open text file, got {file!r:.80}")
    try:
        if is_path:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        else:
            text = file.read()
        document = json.loads(text, parse_constant=_refuse_constant,
                              object_pairs_hook=_object_without_repeated_keys)
    except RecursionError:
        raise ValueError("load: the JSON is nested too deeply to be a tree that save "
                         "wrote") from None
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError among them
        raise ValueError(f"load: not a file that rax.save wrote: {error}") from None
    if not isinstance(document, dict) or sorted(document) != ["rax", "tree"]:
        raise ValueError('load: not a file that rax.save wrote: expected {"rax": '
                         f'{_SAVE_VERSION}, "tree": ...}} at the top')
    version = document["rax"]
    if type(version) is not int or version != _SAVE_VERSION:
        raise ValueError(f"load: the file is of version {version!r:.80}; this rax reads "
                         f"version {_SAVE_VERSION}")
    return _tree_from_json(document["tree"], ())


def _float_to_json(x):
    """A float as save writes it: itself if finite, else one of the strings above."""
    if math.isfinite(x):
        return x
    if not math.isnan(x):
        return "inf" if x > 0.0 else "-inf"
    bits = struct.pack(">d", x).hex()
    return _NAN_NAMES.get(bits, "nan:" + bits)


def _float_from_json(value, where):
    """The float that _float_to_json wrote as value (an int is read as its float too)."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"load: {where()} is an integer too large for a float") from None
    if type(value) is str:
        if value in ("inf", "-inf"):
            return float(value)
        bits = _NAN_BITS.get(value)
        if bits is None and value.startswith("nan:") and len(value) == 20:
            bits = value[4:]
        if bits is not None:
            try:
                x = struct.unpack(">d", bytes.fromhex(bits))[0]
            except ValueError:
                x = 0.0  # not hexadecimal: refused below
            if math.isnan(x):
                return x
    raise ValueError(f"load: {where()} is {value!r:.80}, not a number (a float, an int, or "
                     f"one of the strings 'inf', '-inf', 'nan', '-nan', 'nan:<16 hex digits>')")


def _data_to_json(t):
    """A tensor's data with inf and nan replaced by their strings (a complex number by the
    pair of its parts)."""
    _check_readable(t, "rax.save")
    if t.dtype is complex128:
        return elementwise(_complex_to_json, (t.data,), t.ndim)
    if all(map(math.isfinite, _flat(t.data, t.ndim))):
        return t.data
    return elementwise(_float_to_json, (t.data,), t.ndim)


def _complex_to_json(z):
    return [_float_to_json(z.real), _float_to_json(z.imag)]


def _leaf_to_json(leaf, keys):
    """The JSON text of a tensor or a number of a tree being saved."""
    if isinstance(leaf, Tensor):
        data = json.dumps(_data_to_json(leaf), allow_nan=False)
        dtype = f', "dtype": "{leaf.dtype}"' if leaf.dtype is not float64 else ""
        return f'{{"shape": {list(leaf.shape)}{dtype}, "data": {data}}}'
    if isinstance(leaf, complex):
        return f'{{"complex": {json.dumps(_complex_to_json(leaf), allow_nan=False)}}}'
    if isinstance(leaf, bool):
        return "true" if leaf else "false"
    if isinstance(leaf, numbers.Integral):
        return str(int(leaf))
    if isinstance(leaf, numbers.Real):
        try:
            return json.dumps(_float_to_json(float(leaf)), allow_nan=False)
        except OverflowError:
            raise ValueError(f"save: {_path('tree', keys)} is too large for a float") from None
    raise TypeError(f"save: {_path('tree', keys)} is {leaf!r:.80} ({type(leaf).__name__}); a "
                    f"tree to save holds only tensors and numbers in dicts, lists and tuples")


def _tree_to_json(tree, keys, open_containers):
    """The JSON text of a tree (see above): one line per tensor or number, containers
    indented. open_containers holds the ids of the containers around tree."""
    if not isinstance(tree, (dict, list, tuple)):
        return _leaf_to_json(tree, keys)
    if id(tree) in open_containers:
        raise ValueError(f"save: the tree contains itself at {_path('tree', keys)}")
    if len(keys) >= _MAX_SAVE_DEPTH:
        raise ValueError(f"save: the tree is nested more than {_MAX_SAVE_DEPTH} levels deep "
                         f"at {_path('tree', keys)}")
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"save: the key {key!r:.80} of {_path('tree', keys)} is a "
                                f"{type(key).__name__}; JSON keys are strings")
        children = [(key, f"{json.dumps(key)}: ") for key in tree]
        start, end = '{"dict": {', "}}"
    else:
        children = [(i, "") for i in range(len(tree))]
        start, end = ('{"tuple": [', "]}") if isinstance(tree, tuple) else ("[", "]")
    if not children:
        return start + end
    open_containers.add(id(tree))
    lines = [label + _tree_to_json(tree[key], keys + (key,), open_containers)
             for key, label in children]
    open_containers.remove(id(tree))
    indent = "\n" + "  " * len(keys)
    return start + indent + "  " + ("," + indent + "  ").join(lines) + indent + end


def _refuse_constant(name):
    """json's hook for NaN, Infinity and -Infinity, which are not standard JSON."""
    raise ValueError(f"{name} is not standard JSON (save writes the strings 'inf', '-inf' "
                     f"and 'nan')")


def _object_without_repeated_keys(pairs):
    """json's hook for an object: a dict, refusing a key given twice (JSON would keep the
    last one silently)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        repeated = next(key for i, (key, _) in enumerate(pairs)
                        if key in (other for other, _ in pairs[:i]))
        raise ValueError(f"the key {repeated!r:.80} appears twice in one object")
    return result


def _tree_from_json(node, keys):
    """The tree that JSON value `node` (at path `keys` in the file's tree) stands for."""
    def where():
        return _path("tree", keys)
    if isinstance(node, (list, dict)) and len(keys) >= _MAX_SAVE_DEPTH:
        raise ValueError(f"load: {where()} is nested more than {_MAX_SAVE_DEPTH} levels deep")
    if isinstance(node, list):
        return [_tree_from_json(child, keys + (i,)) for i, child in enumerate(node)]
    if isinstance(node, dict):
        if node.keys() == {"shape", "data"} or node.keys() == {"shape", "dtype", "data"}:
            return _tensor_from_json(node["shape"], node["data"], node.get("dtype"), where)
        if node.keys() == {"dict"} and isinstance(node["dict"], dict):
            return {key: _tree_from_json(child, keys + (key,))
                    for key, child in node["dict"].items()}
        if node.keys() == {"tuple"} and isinstance(node["tuple"], list):
            return tuple(_tree_from_json(child, keys + (i,))
                         for i, child in enumerate(node["tuple"]))
        if node.keys() == {"complex"}:
            return _complex_from_json(node["complex"], where)
        raise ValueError(f'load: {where()}: an object must be a tensor {{"shape": [...], '
                         f'"data": [...]}}, {{"dict": {{...}}}} or {{"tuple": [...]}}; this '
                         f'one has the keys {sorted(node)!r:.80}')
    if type(node) in (bool, int):
        return node
    return _float_from_json(node, where)


def _tensor_from_json(shape, data, dtype, where):
    """A leaf from the "shape", "data" (and "dtype") of a tensor in a saved file, checked."""
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM
            and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f'load: {where()}: "shape" must be a list of at most {MAX_NDIM} '
                         f'non-negative integers, got {shape!r:.80}')
    if dtype not in (None, "bool", "complex128"):
        raise ValueError(f'load: {where()}: "dtype" may only be "bool" or "complex128" '
                         f'(float64 is said by leaving it out), got {dtype!r:.80}')
    shape = _check_size(f"load: {where()}", tuple(shape))  # as constructors check it
    # The data of a shape with a zero side stops at that axis: (0, 3) is [], (2, 0) is [[], []].
    expected = shape[:shape.index(0) + 1] if 0 in shape else shape
    if dtype == "complex128" and 0 not in shape:
        expected += (2,)  # each element the pair [re, im]
    found, probe = [], data
    while isinstance(probe, list) and len(found) <= len(expected):
        found.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    if tuple(found) != expected:
        pairs = " of [re, im] pairs" if dtype == "complex128" else ""
        raise ValueError(f'load: {where()}: "data" has shape {tuple(found)} but "shape" '
                         f'says {shape}{pairs}')
    if dtype == "bool":
        data = _bools_from_json(data, expected, where)
        return _leaf(data if 0 not in shape else _full_lists(shape, False), shape, bool_)
    if dtype == "complex128":
        if 0 in shape:
            return _leaf(_full_lists(shape, 0j), shape, complex128)
        pairs = _data_from_json(data, expected, where, ())
        return _leaf(rowwise(lambda row: [complex(*pair) for pair in row], (pairs,),
                             len(shape)) if shape else complex(*pairs), shape, complex128)
    return _leaf(_data_from_json(data, expected, where, ()), shape)


def _complex_from_json(pair, where):
    """The complex number saved as {"complex": [re, im]}."""
    if not (isinstance(pair, list) and len(pair) == 2):
        raise ValueError(f'load: {where()}: "complex" must be a pair [re, im], got '
                         f'{pair!r:.80}')
    return complex(_float_from_json(pair[0], where), _float_from_json(pair[1], where))


def _bools_from_json(data, shape, where):
    """The nested true/false of a saved bool tensor (its shape already checked at the first
    items), checked all through."""
    copied = _copy_rectangular(data, shape, bool) if 0 not in shape else data
    if copied is None:
        raise ValueError(f'load: {where()}: "data" of a bool tensor must be nested lists of '
                         f'true and false of shape {shape}')
    return copied


def _data_from_json(data, shape, where, index):
    """Nested lists of floats of `shape` from a saved tensor's "data" (or a ValueError saying
    where in it the lengths or the values are wrong). index: the position of data in it."""
    def here():
        return where() + ': "data"' + "".join(f"[{i}]" for i in index)
    if not shape:
        return _float_from_json(data, here)
    if not isinstance(data, list) or len(data) != shape[0]:
        found = f"{len(data)} items" if isinstance(data, list) else f"{data!r:.40}"
        raise ValueError(f"load: {here()} is {found}, but the shape asks for a list of "
                         f"{shape[0]} on this axis (ragged data)")
    if len(shape) == 1 and set(map(type, data)) <= {float}:  # the common case, at C speed
        return data
    return [_data_from_json(child, shape[1:], where, index + (i,))
            for i, child in enumerate(data)]


# ============================================================================================
# 8. Forward mode and derivatives of derivatives
#
# JAX's family of transformations, built on the vjp rules alone, so no op needs a rule of
# its own. vjp keeps f's graph and returns the pullback, cotangent -> J^T cotangent. Forward
# mode comes from it by the double-vjp trick: the pullback of a cotangent variable u is built
# from tensor ops, so it is a function of u, linear in it; for a tangent v,
# <J^T u, v> = <u, J v>, so one more backward pass, from <J^T u, v> to u, gives u's gradient
# J v (u's value never matters). This needs every vjp rule to be written with rax ops, so
# that it is differentiable in g: a rule that reads floats out of g would give a wrong jvp.
# jacobian takes rows by vjp or columns by jvp, whichever are fewer; hessian is the jacobian
# of grad; hvp is jvp of grad.
# ============================================================================================

def vjp(f, *primals):
    """(f(*primals), vjp_fn), where vjp_fn(cotangent) is J^T cotangent for each primal (as JAX).

    f may return a tensor or a tree of tensors; the cotangent has that structure and those
    shapes. vjp_fn returns a tuple with one tree per primal, shaped like it (a 0-d Tensor for
    a number), and may be called again with other cotangents: f's graph is kept.

    >>> out, f_vjp = vjp(lambda x, w: x * w, Tensor([1.0, 2.0]), Tensor([3.0, 4.0]))
    >>> [t.tolist() for t in f_vjp(Tensor([1.0, 10.0]))]  # (w * ct, x * ct)
    [[3.0, 40.0], [1.0, 20.0]]
    """
    return _vjp("vjp", f, primals)


def _vjp(op, f, primals):
    """vjp, with errors named for op (the function the user called)."""
    _check_function(op, f)
    args = [tree_map(_as_argument, primal) for primal in primals]
    arguments = frozenset(leaf for arg in args for leaf in tree_leaves(arg))
    out = _differentiating(arguments, f, *args)
    outputs = _output_tensors(op, out)

    def vjp_fn(cotangent):
        given = _matching_leaves(op, out, cotangent, "out", "cotangent")
        cotangents = []
        for (keys, o), c in zip(outputs, given):
            c = _seed_of(o, c)  # a complex output's cotangent is complex (5h)
            if c.shape != o.shape:
                raise ValueError(f"{op}: {_path('cotangent', keys)} has shape {c.shape}, but "
                                 f"{_path('out', keys)} has shape {o.shape}")
            cotangents.append(c)
        if len(outputs) == 1:  # the cotangent is the seed itself
            root, seed = outputs[0][1], cotangents[0]
        else:  # <out, cotangent> summed over the leaves: its gradient is J^T cotangent
            root = _sum_of_products([o for _, o in outputs], cotangents)
            seed = _seed_of(root, _constant(1.0))
        g = _GradientGraph(root, seed, arguments).node(root)
        return tuple(g.wrt(arg) for arg in args)

    return out, vjp_fn


def _output_tensors(op, out):
    """[(keys, tensor), ...] for the leaves of f's result, which must all be tensors."""
    items = _leaves_with_keys(out, op, "out")
    for keys, leaf in items:
        if not isinstance(leaf, Tensor):
            raise TypeError(f"{op}: f must return a tensor or a tree of tensors, but "
                            f"{_path('out', keys)} is {leaf!r:.80} ({type(leaf).__name__})")
    if not items:
        raise ValueError(f"{op}: f returned no tensor")
    return items


def _sum_of_products(xs, ys):
    """The sum over pairs of (x * y).sum(): a 0-d tensor (an inner product of two trees)."""
    total = None
    for x, y in zip(xs, ys):
        term = (x * y).sum()
        total = term if total is None else total + term
    return total


def jvp(f, primals, tangents):
    """(f(*primals), J tangents): the derivative of f along the tangents (as JAX's jvp).

    primals and tangents are tuples of the same structure, a tangent shaped like its
    primal; the second result is shaped like f's result. It costs one evaluation of f and
    two backward passes (the double-vjp trick; see the top of this chapter), whatever the
    number of inputs: J itself is never formed.

    >>> out, t_out = jvp(lambda x: x ** 3, (Tensor([1.0, 2.0]),), (Tensor([1.0, 0.5]),))
    >>> t_out.tolist()  # 3 x**2 v
    [3.0, 6.0]
    """
    return _jvp("jvp", f, primals, tangents)


def _jvp(op, f, primals, tangents):
    _check_function(op, f)
    primals, tangents = _primals_and_tangents(op, primals, tangents)
    out, push_forward = _linearize(op, f, primals)
    return out, push_forward(tangents)


def _primals_and_tangents(op, primals, tangents):
    """primals and tangents as tuples of trees of one structure, tangents as tensors shaped
    like their primals."""
    for name, value in (("primals", primals), ("tangents", tangents)):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{op}: {name} must be a tuple of f's arguments, such as (x,), "
                            f"got {type(value).__name__}")
    primals, tangents = tuple(primals), tuple(tangents)
    given = _matching_leaves(op, primals, tangents, "primals", "tangents")
    leaves = []
    for (keys, p), t in zip(_leaves_with_keys(primals, op, "primals"), given):
        p, t = _as_num(p, op), _as_num(t, op)
        if t.dtype is not p.dtype:  # a real tangent of a complex primal is promoted
            t = _seed_of(p, t)
        if p.shape != t.shape:
            raise ValueError(f"{op}: {_path('tangents', keys)} has shape {t.shape}, but "
                             f"{_path('primals', keys)} has shape {p.shape}")
        leaves.append(t)
    return primals, _rebuild(tangents, iter(leaves))


def _linearize(op, f, primals):
    """(f(*primals), push_forward), push_forward(tangents) giving J tangents."""
    out, vjp_fn = _vjp(op, f, primals)
    return out, _push_forward(op, out, vjp_fn)


def _push_forward(op, out, vjp_fn):
    """tangents -> J tangents, from f's result and pullback: one backward pass from a
    cotangent variable u, made once, then one backward pass per call, from <J^T u, v> back
    to u, whose gradient is J v (the value of u never matters: all of it is linear in u)."""
    u = [_leaf(_full_lists(o.shape, _ZERO_OF[o.dtype] if o.dtype is complex128 else 0.0),
               o.shape, o.dtype if o.dtype is complex128 else float64)
         for _, o in _output_tensors(op, out)]
    cotangents = tree_leaves(vjp_fn(_rebuild(out, iter(u))))  # tensors, built from u

    def push_forward(tangents):
        # With complex numbers the pullback is only real-linear in u: the pairing is
        # Re <J^T u, v> = Re <u, J v>, whose gradient in u is J v (JAX's convention, 5h).
        inner = real(_sum_of_products(cotangents, tree_leaves(tangents))) if cotangents \
            else _constant(0.0)
        g = _GradientGraph(inner, _constant(1.0), frozenset(u)).node(inner)
        return _rebuild(out, iter([g[ui] for ui in u]))

    return push_forward


def jacobian(f, argnums=0):
    """A function returning the Jacobian of f w.r.t. args[argnums] (as JAX's jacrev/jacfwd).

    For a tensor x and a tensor result, the Jacobian has shape f(x).shape + x.shape, with
    J[i..., j...] = d f[i...] / d x[j...]. For trees, it is a tree like f's result whose each
    leaf is a tree like args[argnums] (a tuple of them when argnums is a tuple), as JAX's.
    With m output and n input elements it takes min(m, n) passes: m rows by vjp when m <= n
    (reverse mode), else n columns by jvp (forward mode). The result is differentiable.

    >>> jacobian(lambda x: x ** 2)(Tensor([1.0, 3.0])).tolist()
    [[2.0, 0.0], [0.0, 6.0]]
    """
    return _jacobian("jacobian", f, argnums)


def _jacobian(op, f, argnums):
    """jacobian, with errors named for op (the function the user called)."""
    positions = _as_argnums(f, argnums, op)

    def jacobian_f(*args, **kwargs):
        _check_argnums_range(op, argnums, positions, args)

        def f_of(*wrt):
            full = list(args)
            for p, arg in zip(positions, wrt):
                full[p] = arg
            return f(*full, **kwargs)

        wrt = tuple(args[p] for p in positions)
        inputs = [_as_num(leaf, op) for leaf in tree_leaves(wrt)]
        out, vjp_fn = _vjp(op, f_of, wrt)
        outputs = [o for _, o in _output_tensors(op, out)]
        if any(o.dtype is bool_ for o in outputs):
            raise TypeError(f"{op}: f returns a bool tensor: no derivative flows through bools "
                            f"(as JAX's jacrev); return floats")
        if any(t.dtype is complex128 for t in inputs + outputs):  # a real Jacobian only
            raise TypeError(f"{op}: complex128 inputs or outputs: the Jacobian of a function "
                            f"of complex numbers needs JAX's holomorphic=True, which rax's "
                            f"{op} does not have (as jax.jacrev without it); use grad or jvp")
        if _sum(o.size for o in outputs) <= _sum(x.size for x in inputs):
            blocks = _jacobian_rows(out, outputs, inputs, vjp_fn)
        else:
            blocks = _jacobian_columns(_push_forward(op, out, vjp_fn), wrt, outputs, inputs)
        per_output = [_rebuild(wrt, iter(row)) for row in blocks]
        if isinstance(argnums, numbers.Integral):
            per_output = [tree[0] for tree in per_output]
        return _rebuild(out, iter(per_output))

    return jacobian_f


def _unit(shape, j):
    """A constant of `shape` that is 1 at flat position j and 0 elsewhere."""
    flat = [0.0] * math.prod(shape)
    flat[j] = 1.0
    return _node(None, None, _fold(flat, shape), shape, (), (), _CONSTANT)


def _jacobian_rows(out, outputs, inputs, vjp_fn):
    """blocks[k][l] = d outputs[k] / d inputs[l], one vjp per element of each output."""
    zeros_out = [_filled(o.shape, 0.0) for o in outputs]
    blocks = []
    for k, o in enumerate(outputs):
        rows = []  # rows[i][l]: the gradient of element i of output k w.r.t. input l
        for i in range(o.size):
            cotangent = zeros_out[:k] + [_unit(o.shape, i)] + zeros_out[k + 1:]
            rows.append(tree_leaves(vjp_fn(_rebuild(out, iter(cotangent)))))
        blocks.append([_assemble(o.shape, x.shape, [row[l] for row in rows], by_rows=True)
                       for l, x in enumerate(inputs)])
    return blocks


def _jacobian_columns(push_forward, wrt, outputs, inputs):
    """blocks[k][l] = d outputs[k] / d inputs[l], one jvp per element of each input."""
    zeros_in = [_filled(x.shape, 0.0) for x in inputs]
    columns = []  # columns[l][j][k]: d output k / d element j of input l
    for l, x in enumerate(inputs):
        columns.append([])
        for j in range(x.size):
            tangent = zeros_in[:l] + [_unit(x.shape, j)] + zeros_in[l + 1:]
            columns[l].append(tree_leaves(push_forward(_rebuild(wrt, iter(tangent)))))
    return [[_assemble(o.shape, x.shape, [column[k] for column in columns[l]], by_rows=False)
             for l, x in enumerate(inputs)] for k, o in enumerate(outputs)]


def _assemble(out_shape, in_shape, parts, by_rows):
    """The block of shape out_shape + in_shape from its rows (of in_shape, one per output
    element) or else its columns (of out_shape, one per input element)."""
    if not parts:  # an output or input with no elements
        shape = out_shape + in_shape
        return _filled(shape, 0.0)
    stacked = stack(parts)  # (number of parts,) + the shape of a part
    if by_rows:
        return stacked.reshape(out_shape + in_shape)
    n = len(in_shape)  # columns: in_shape + out_shape, then the output axes to the front
    block = stacked.reshape(in_shape + out_shape)
    return block.transpose(tuple(range(n, n + len(out_shape))) + tuple(range(n)))


def hessian(f, argnums=0):
    """A function returning the Hessian of a scalar f w.r.t. args[argnums]: the Jacobian of
    its gradient, of shape x.shape + x.shape for a tensor x (trees as jacobian).

    >>> hessian(lambda x: (x ** 3).sum())(Tensor([1.0, 2.0])).tolist()  # diag(6 x)
    [[6.0, 0.0], [0.0, 12.0]]
    """
    _as_argnums(f, argnums, "hessian")
    return _jacobian("hessian", grad(f, argnums), argnums)


def hvp(f, primals, tangents):
    """The Hessian of a scalar f times the tangents, without forming the Hessian: the jvp of
    grad(f) w.r.t. primals[0], along all the tangents (JAX's recipe jvp(grad(f), primals,
    tangents)[1]); shaped like primals[0]. For an f of one argument, that is H v.

    >>> hvp(lambda x: (x ** 3).sum(), (Tensor([1.0, 2.0]),), (Tensor([1.0, 1.0]),)).tolist()
    [6.0, 12.0]
    """
    _check_function("hvp", f)
    return _jvp("hvp", grad(f), primals, tangents)[1]


# ---- 8a. vmap and loops: JAX's other transformations, eagerly --------------------------------
#
# vmap maps f over an axis of its arguments; scan, fori_loop, while_loop and cond are
# jax.lax's loops and branch, with its semantics and trees for carries and outputs.
#
# vmap works as JAX teaches: f is traced once, on the first example, and its program is run
# on the whole batch, each equation by its op's batching rule (the table _BATCHING below):
# an elementwise op broadcasts a batch against an unbatched operand by itself, a reduction
# shifts its axes past the batch axis, a matmul batches, and so on. A batched value carries
# its batch on axis 0; what depends on no mapped argument is computed once. An op without a
# rule (one of your primitives) runs once per example and is stacked. The rules are rax's
# ops, so gradients flow through the batched computation (vmap of grad, grad of vmap) and a
# trace records it (jit of vmap). When f cannot be traced (it branches in Python on values)
# or is given a mapped mask (a static argument), vmap calls f once per example instead.
#
# The loops are written with Python loops over rax's ops: eagerly they build the graph as
# any Python loop does, so gradients go through them. Traced (jit, trace, or inside a grad
# that is traced), each loop and each cond on a traced value is ONE equation whose body,
# condition or branches are programs, traced once: a scan runs as a generated for loop
# (_ScanOp), a while_loop as long as its condition holds (_WhileOp), a cond only the
# branch taken (_CondOp); NumPy and PyTorch code gets Python loops around functions of
# the programs, JAX's gets jax.lax.scan, while_loop and cond.

def vmap(f, in_axes=0, out_axes=0):
    """f mapped over an axis of its arguments, as jax.vmap: vmap(f)(xs) stacks f(x) for each
    x along axis 0 of xs. in_axes is an int, None (not mapped) or a tree prefix of the
    positional arguments (a tuple with one entry per argument, each an int, None or a tree
    like that argument); keyword arguments are mapped along axis 0. out_axes is likewise a
    tree prefix of f's result. Every mapped axis must have the same size (a ValueError
    names the arguments that differ); negative axes count from the end. Composes with grad,
    jacobian, jit and itself. f runs once, on the batch (see above), or once per example if
    it cannot be traced.

    >>> vmap(lambda x, w: (x * w).sum(), in_axes=(0, None))(ones((3, 2)), Tensor([1.0, 2.0]))
    Tensor([3.0, 3.0, 3.0], op='sum')
    """
    _check_function("vmap", f)

    def mapped(*args, **kwargs):
        specs = _axis_specs("vmap", in_axes, args) + [
            (_path("kwargs", keys), leaf, 0) for keys, leaf in _leaves_with_keys(kwargs)]
        sizes = {}
        for path, leaf, axis in specs:
            if axis is not None:
                t = _as_any(leaf, "vmap")
                sizes.setdefault(t.shape[_normalize_axis("vmap", axis, t.ndim)], []).append(path)
        if len(sizes) != 1:
            detail = "; ".join(f"{', '.join(paths)} of size {n}" for n, paths in sizes.items())
            raise ValueError(f"vmap: the mapped axes must have one size, got: "
                             f"{detail or 'no mapped argument'}")
        n = next(iter(sizes))
        if n == 0:
            raise ValueError("vmap: an axis of size 0 has no example to call f on")
        batched = _vmap_batched(f, args, kwargs, in_axes, out_axes, specs, n)
        if batched is not _UNBATCHABLE:
            return batched
        results = [f(*_example(args, in_axes, i), **_example(kwargs, 0, i)) for i in range(n)]
        return _stacked("vmap", results, out_axes)
    mapped.__name__ = mapped.__qualname__ = f"vmap({getattr(f, '__name__', 'f')})"
    return mapped


_UNBATCHABLE = object()  # what _vmap_batched gives when f must be called per example


def _vmap_batched(f, args, kwargs, in_axes, out_axes, specs, n):
    """f's program on the first example, run on the whole batch by the batching rules (see
    above): f's result, each output stacked along its out_axes; _UNBATCHABLE if f cannot be
    traced or a mapped argument is static (a mask)."""
    if any(axis is not None and _is_bool(leaf) for _, leaf, axis in specs):
        return _UNBATCHABLE
    try:
        program = _trace(f, _example(args, in_axes, 0), _example(kwargs, 0, 0), immediate=True)
    except TraceError:
        return _UNBATCHABLE
    values = {}
    inputs = iter(program.inputs)
    for _, leaf, axis in specs:
        if _is_input(leaf):
            t = _as_any(leaf, "vmap")
            values[next(inputs)] = (t, False) if axis is None else (
                moveaxis(t, _normalize_axis("vmap", axis, t.ndim), 0), True)
    for v in program.constants:
        source = program._sources.get(v)
        values[v] = (source if source is not None else _leaf(v.data, v.shape, v.dtype), False)
    for eq in program.equations:
        operands = [values[v] for v in eq.inputs]
        if not any(b for _, b in operands):  # the same for every example: computed once
            values[eq.output] = (eq.forward(*[t for t, _ in operands], **eq.attrs), False)
        else:
            values[eq.output] = (_batch_rule(eq)(eq, operands, n), True)
    outputs = []
    axes = [axis for _, leaf, axis in _prefix_leaves(out_axes, program._result, ("out",))
            if leaf is _INPUT]
    for v, axis in zip(program.outputs, axes):
        t, is_batched = values[v]
        if axis is None:
            if is_batched:
                t = _stacked("vmap", [t[i] for i in range(n)], None)
            outputs.append(t)
            continue
        if not is_batched:
            t = broadcast_to(t, (n,) + t.shape)
        outputs.append(moveaxis(t, 0, _normalize_axis("vmap", axis, t.ndim)))
    return program._in_structure(outputs)


def _batch_rule(eq):
    """The batching rule of eq's op: its entry in _BATCHING, the elementwise rule for an
    elementwise op, or one call per example."""
    rule = _BATCHING.get(eq.kind)
    if rule is None and eq.kind is not None and isinstance(_rule_of(eq), _Elementwise):
        rule = _batch_as_is
    if isinstance(getattr(eq.forward, "traced_op", None), _ScanOp):
        rule = _batch_scan
    return rule or _batch_by_loop


def _batch_scan(eq, operands, n):
    """A traced scan on a batch, inside a trace (jit of vmap): ONE scan whose step is the
    body's step under vmap, the carry and the mapped xs batched on axis 1 of the loop's
    axis 0 (so the program holds one loop, not one per example). Outside a trace, each
    example runs the scan's compiled loop (faster than batched ops a step, eagerly)."""
    if _current_trace() is None:
        return _batch_by_loop(eq, operands, n)
    op = eq.forward.traced_op
    k, m = op.k, op.m
    carry = tuple(t if b else broadcast_to(t, (n,) + t.shape) for t, b in operands[:k])
    xs = tuple(moveaxis(t, 0, 1) if b else t for t, b in operands[k:k + m])
    axes = (0, tuple(0 if b else None for _, b in operands[k:k + m]),
            tuple(0 if b else None for _, b in operands[k + m:]))
    closed = tuple(t for t, _ in operands[k + m:])

    def one(c, x, cap):
        out = op.step(c, x, cap)
        return out[:k], out[k:]
    final, ys = scan(lambda c, x: vmap(one, in_axes=axes)(c, x, closed), carry, xs,
                     length=op.n, reverse=op.reverse)
    parts = list(final) + [moveaxis(y, 1, 0) for y in ys]
    return concatenate([t.reshape((n, -1)) for t in parts], axis=1)


def _batch_by_loop(eq, operands, n):
    """No rule: the op on each example, stacked (correct for any op, but a call each)."""
    return stack([eq.forward(*[t[i] if b else t for t, b in operands], **eq.attrs)
                  for i in range(n)])


def _batch_as_is(eq, operands, n):
    """An op that broadcasts its operands (elementwise) or maps over leading axes (a
    stack of matrices): an unbatched operand's shape is the example's, which lines up with
    the batched ones' from the right."""
    return eq.forward(*[t for t, _ in operands], **eq.attrs)


def _batch_all_batched(eq, operands, n):
    """An op over stacks of matrices, with every operand batched (else one call each)."""
    if all(b for _, b in operands):
        return _batch_as_is(eq, operands, n)
    return _batch_by_loop(eq, operands, n)


def _batch_axis_attrs(eq, operands, n):
    """An op along axes (a reduction, cumsum, argsort, concatenate, take): its axes move
    past the batch axis; an unbatched operand is broadcast to the batch first."""
    axis = eq.attrs.get("axis")
    if eq.kind == "take" and operands[1][1]:
        return _batch_take(eq, operands, n)
    if axis is None:
        return _batch_by_loop(eq, operands, n)
    shifted = tuple(a + 1 for a in axis) if isinstance(axis, tuple) else axis + 1
    tensors = [t if b or eq.kind == "take" else broadcast_to(t, (n,) + t.shape)
               for t, b in operands]
    return eq.forward(*tensors, **dict(eq.attrs, axis=shifted))


def _batch_take(eq, operands, n):
    """take(x, indices, axis=0) with batched indices (sort's, x[indices]'s): the batch of
    x flattened into its axis 0, each example's indices checked and moved to its rows."""
    (x, bx), (indices, _) = operands
    if eq.attrs["axis"] != 0:
        return _batch_by_loop(eq, operands, n)
    m = eq.inputs[0].shape[0]
    x = x if bx else broadcast_to(x, (n,) + x.shape)
    indices = _checked_indices(indices, m)
    offsets = (arange(float(n)) * float(m)).reshape((n,) + (1,) * (indices.ndim - 1))
    return take(x.reshape((n * m,) + x.shape[2:]), indices + offsets, 0)


def _batch_matmul(eq, operands, n):
    """x @ y with a batch axis in front of either: each example's operand made at least
    2-D, the batched and unbatched ones brought to one rank by axes of 1 after the batch
    axis, so matmul's own broadcasting of leading axes does the batching."""
    (x, bx), (y, by) = operands
    ex, ey = eq.inputs[0].shape, eq.inputs[1].shape  # the example's shapes
    if len(ey) == 2 and not by:  # the batch is more rows of x: one matmul (W3a: 3x faster)
        return matmul(x.reshape((-1, ey[0])), y).reshape((n,) + eq.output.shape)
    if len(ex) <= 2 and len(ey) == 2 and not bx:  # more columns of y
        columns = moveaxis(y, 0, 1).reshape((ey[0], n * ey[1]))
        return moveaxis((x @ columns).reshape(ex[:-1] + (n, ey[1])), -2, 0)
    x2 = x if len(ex) > 1 else (x.reshape(x.shape[:-1] + (1,) + x.shape[-1:]))
    y2 = y if len(ey) > 1 else (y.reshape(y.shape + (1,)))
    rank = _max(_max(len(ex), 2), _max(len(ey), 2)) + 1
    x2 = x2.reshape((x2.shape[0],) + (1,) * (rank - x2.ndim) + x2.shape[1:]) if bx else x2
    y2 = y2.reshape((y2.shape[0],) + (1,) * (rank - y2.ndim) + y2.shape[1:]) if by else y2
    return matmul(x2, y2).reshape((n,) + eq.output.shape)


_BATCHING = {  # op -> rule(eq, [(tensor, batched)], n): the batched output, batch on axis 0
    "broadcast_to": lambda eq, operands, n: broadcast_to(
        operands[0][0].reshape((n,) + (1,) * (len(eq.output.shape) - len(eq.inputs[0].shape))
                               + eq.inputs[0].shape), (n,) + eq.output.shape),
    "reshape": lambda eq, operands, n: operands[0][0].reshape((n,) + eq.output.shape),
    "transpose": lambda eq, operands, n: operands[0][0].transpose(
        (0,) + tuple(a + 1 for a in eq.attrs["axes"])),
    "getitem": lambda eq, operands, n: eq.forward(
        operands[0][0], index=(slice(None),) + tuple(eq.attrs["index"])),
    "matmul": _batch_matmul,
    "astype": _batch_as_is, "identity": _batch_as_is, "stop_gradient": _batch_as_is,
    "checked_indices": _batch_as_is,
    **dict.fromkeys(("sum", "max", "min", "prod", "any", "all", "argmax", "argmin",
                     "logsumexp", "cumsum", "cumprod", "argsort", "concatenate", "take"),
                    _batch_axis_attrs),
    **dict.fromkeys(("cholesky", "inv", "det", "logabsdet", "sign_of_det", "cofactors",
                     "eigh", "solve"), _batch_all_batched),
}


def _axis_specs(op, in_axes, args):
    """[(path, leaf, axis)] for each leaf of the positional arguments, in_axes read as a
    tree prefix of args (an int or None for all)."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if isinstance(in_axes, tuple) and len(in_axes) != len(args):
        raise ValueError(f"{op}: in_axes has {len(in_axes)} entries for {len(args)} "
                         f"positional arguments")
    specs = []
    for keys, leaf, axis in _prefix_leaves(in_axes, args, ("args",)):
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise TypeError(f"{op}: an axis must be an int or None, got {axis!r}")
        specs.append((_path(keys[0], keys[1:]), leaf, axis))
    return specs


def _prefix_leaves(prefix, tree, keys):
    """[(keys, leaf, the entry of prefix over it)]: prefix is a tree prefix of tree (an
    entry that is not a container applies to the whole subtree below it)."""
    children = _children(tree, "vmap", "args", ()) if isinstance(prefix, (dict, list, tuple)) \
        else None
    if children is None:
        return [(keys + k, leaf, prefix) for k, leaf in _leaves_with_keys(tree)]
    inner = dict(_children(prefix, "vmap", "in_axes", ())) if not isinstance(prefix, tuple) \
        or len(prefix) == len(children) else None
    if inner is None or set(inner) != {k for k, _ in children}:
        raise ValueError(f"vmap: in_axes {_text(prefix)} does not fit the structure of "
                         f"{_path(keys[0], keys[1:])}")
    return [item for k, child in children for item in _prefix_leaves(inner[k], child,
                                                                      keys + (k,))]


def _example(tree, axes, i):
    """The i-th example of tree: each mapped leaf indexed at i along its axis."""
    specs = _prefix_leaves(axes, tree, ("args",))
    leaves = [leaf if axis is None else _as_any(leaf, "vmap")[
        (slice(None),) * _normalize_axis("vmap", axis, _as_any(leaf, "vmap").ndim) + (i,)]
        for _, leaf, axis in specs]
    return _rebuild(tree, iter(leaves))


def _stacked(op, results, out_axes):
    """The results of f for each example stacked along out_axes (a tree prefix of them); an
    output with axis None must be the same in every example."""
    first = results[0]
    specs = _prefix_leaves(out_axes, first, ("out",))
    columns = list(zip(*[tree_leaves(r) for r in results]))
    leaves = []
    for (keys, _, axis), column in zip(specs, columns):
        parts = [_as_any(part, op) for part in column]
        if axis is None:
            if any(p.shape != parts[0].shape or not bool(_all(
                    (p == parts[0]) | (isnan(p) & isnan(parts[0])) if p.dtype is float64
                    else p == parts[0])) for p in parts[1:]):
                raise ValueError(f"{op}: out_axes is None at {_path(keys[0], keys[1:])}, but "
                                 f"that output differs between examples")
            leaves.append(column[0])
        else:
            leaves.append(stack(parts, axis=_normalize_axis(op, axis, parts[0].ndim + 1)))
    return _rebuild(first, iter(leaves))


def scan(f, init, xs=None, length=None, reverse=False):
    """jax.lax.scan: carry = init, then carry, y = f(carry, x) for each x along axis 0 of the
    tree xs (from the end if reverse); returns (carry, ys), the ys stacked along axis 0 in
    the order of xs. xs None takes `length` steps with x None. The carry must keep its tree
    structure and shapes (a TypeError otherwise, as JAX's).

    >>> carry, ys = scan(lambda c, x: (c + x, c * x), 0.0, Tensor([1.0, 2.0, 3.0]))
    >>> carry.item(), ys.tolist()
    (6.0, [0.0, 2.0, 9.0])
    """
    _check_function("scan", f)
    leaves = [] if xs is None else [_as_any(leaf, "scan") for leaf in tree_leaves(xs)]
    sizes = {t.shape[0] if t.ndim else None for t in leaves}
    if None in sizes or len(sizes) > 1 or (length is not None and sizes and
                                            sizes != {length}):
        raise ValueError(f"scan: every leaf of xs needs a leading axis of one size (and "
                         f"length, if given, that size); got sizes {sorted(map(str, sizes))} "
                         f"and length {length!r}")
    n = sizes.pop() if sizes else _int("scan", "length", length if length is not None else -1,
                                        0)
    if _current_trace() is not None and n:
        traced = _scan_equation(f, init, xs, n, reverse)
        if traced is not None:
            return traced
    order = range(n - 1, -1, -1) if reverse else range(n)
    carry, ys = init, [None] * n
    for i in order:
        carry_in = carry
        carry, ys[i] = f(carry, None if xs is None else _rebuild(xs, iter(
            [t[i] for t in leaves])))
        _same_carry("scan", carry_in, carry)
    if n == 0:  # no steps: f's ys say their shapes when f is called on zeros, unused
        probe = f(init, None if xs is None else _rebuild(xs, iter(
            [zeros(t.shape[1:]) for t in leaves])))[1]
        return carry, tree_map(lambda y: None if y is None else zeros(
            (0,) + _as_any(y, "scan").shape), probe)
    if ys[0] is None:
        return carry, None
    return carry, _stacked("scan", ys, 0)


def _scan_equation(f, init, xs, n, reverse):
    """scan in a traced function as ONE equation whose body is f's program (see _ScanOp):
    (carry, ys) unpacked from its output; None when it must be unrolled instead (a bool
    carry or x, an f that cannot be traced or whose result is not (carry, ys) of tensors)."""
    leaves = _float_tensors(init if xs is None else (init, xs), "scan")
    if leaves is None:
        return None
    k = len(tree_leaves(init))
    try:
        body, captured, used = _scan_body(f, init, xs, leaves[k:])
    except (TypeError, IndexError):  # TraceError too: f is run as a Python loop instead
        return None
    leaves = leaves[:k] + [leaves[k + j] for j in used]
    result = body._result
    if not (isinstance(result, tuple) and len(result) == 2) or any(
            leaf is not _INPUT for leaf in tree_leaves(
                result if result[1] is not None else result[0])) or len(
            tree_leaves(result[0])) != k or any(v.dtype is not float64 for v in body.outputs):
        return None
    _same_carry("scan", init, _rebuild(result[0], iter(
        [_leaf(_full_lists(v.shape, 0.0), v.shape) for v in body.outputs[:k]])))
    op = _ScanOp(body, n, reverse, k, len(leaves) - k)
    out = op.forward(*leaves, *captured, body=body, length=n, reverse=reverse)
    carry, ys = op.unpack(out)
    return (_rebuild(init, iter(carry)),
            None if result[1] is None else _rebuild(result[1], iter(ys)))


def _scan_body(f, init, xs, x_leaves):
    """(body, captured, used): f traced on init and xs's first example, with only the
    leaves of xs that it reads (by index, `used`) as inputs, so that the loop neither
    passes nor slices the others (fori_loop's i, when the body ignores it: a speed device,
    no O(n) constant of indices in the program; and a gradient's scans skip what they
    do not read)."""
    firsts = [t[0] for t in x_leaves]
    body, captured = _trace(f, (init, None if xs is None else _rebuild(xs, iter(firsts))),
                            {}, immediate=True, capture=True)
    k, read = len(tree_leaves(init)), {v for eq in body.equations for v in eq.inputs}
    read |= set(body.outputs)
    used = [j for j, v in enumerate(body.inputs[k:k + len(x_leaves)]) if v in read]
    if len(used) == len(x_leaves):
        return body, captured, used

    def reading(carry, kept):  # f with the unread leaves of x fixed (they are not read)
        full = list(firsts)
        for j, leaf in zip(used, kept or ()):
            full[j] = leaf
        return f(carry, _rebuild(xs, iter(full)))
    kept = tuple(firsts[j] for j in used) if used else None
    body, captured = _trace(reading, (init, kept), {}, immediate=True, capture=True)
    return body, captured, used


class _ScanOp:
    """One traced scan: its body (a program of the carry's and an x's leaves, then the
    tensors f closed over, giving the new carry's leaves and a y's), the trip count, the
    direction and how many leaves the carry (k) and xs (m) have. Its node's inputs are the
    carry's leaves, xs's leaves and the closed-over tensors; its output holds the final
    carry and the stacked ys, flattened one after another (one node, one output), which
    unpack cuts apart. The data come from one generated for statement around the body's
    compiled statements (see loop); the vjp is itself a scan, in the other direction (see
    backward, which calls the module's scan, not the node's forward named so here)."""

    def __init__(self, body, n, reverse, k, m):
        self.body, self.n, self.reverse, self.k, self.m = body, n, reverse, k, m
        self.shapes = [v.shape for v in body.outputs[:k]] + [
            (n,) + v.shape for v in body.outputs[k:]]
        self.vjps, self._last, self.loops, self._depends = None, (None, None), {}, None

        def scan(*tensors, body, length, reverse):  # the node's forward, as ops call it
            data = self.data([t.data for t in tensors])
            if self.vjps is None:
                self.vjps = tuple(self.rule(i) for i in range(len(tensors)))
            return _node("scan", scan, data, (len(data),), tensors, self.vjps,
                         {"body": body, "length": length, "reverse": reverse})
        scan.made_by_primitive = True  # computed by its own code, not a rule of _RULES
        scan.traced_op = self  # (its code in a backend: see _traced_op_lines)
        self.forward = scan

    def data(self, inputs):
        """The output's data: the final carry and the ys, each flattened, one list."""
        order = range(self.n - 1, -1, -1) if self.reverse else range(self.n)
        try:
            outputs = (self.loops.get(False) or self.loop(False))(order, *inputs)
        except (ArithmeticError, ValueError):  # as a compiled program redoes it safely
            outputs = (self.loops.get(True) or self.loop(True))(order, *inputs)
        return [value for data, shape in zip(outputs, self.shapes)
                for value in _flat(data, len(shape))]

    def loop(self, safe):
        """The whole loop as one compiled function: the body's compiled statements inside
        a for statement, its carry's names assigned at the end of each step. A speed
        device: no call a step (W4 as fori_loop under jit(value_and_grad), 10,000 steps:
        13 -> 2.8 ms a call)."""
        k, m = self.k, self.m
        text, bound = _python_source(self.body, safe)
        head, _, rest = text.partition("\ndef program(")
        params, _, lines = rest.partition("):\n")
        params = params.split(", ") if params else []
        lines = lines.rstrip("\n").split("\n")
        outputs = [o.rstrip(",") for o in lines.pop().strip()[len("return ("):-1].split(", ")
                   if o]  # (none: a gradient's scan that carries nothing and stacks nothing)
        stacks, ys = [f"_xs{j}" for j in range(m)], [f"_ys{j}" for j in range(len(outputs) - k)]
        loop = [f"def loop(_order, {', '.join(params[:k] + stacks + params[k + m:])}):"]
        loop += [f"    {y} = [None] * {self.n}" for y in ys] + ["    for _i in _order:"]
        loop += [f"        {x} = {stack}[_i]" for x, stack in zip(params[k:k + m], stacks)]
        loop += ["    " + line for line in lines]
        if outputs:  # at once: a y may be a carry from before the step
            loop.append(f"        {', '.join(params[:k] + [f'{y}[_i]' for y in ys])}, = "
                        f"{', '.join(outputs)},")
        loop.append("        pass")  # (a step may have nothing to do: see backward)
        loop.append(f"    return {_tuple(params[:k] + ys)}")
        text = head + "\n" + "\n".join(loop) + "\n"
        namespace = {"__name__": "rax_program", **bound}
        filename = f"<rax scan {id(self):x}{' safe' if safe else ''}>"
        exec(compile(text, filename, "exec"), namespace)  # noqa: S102: rax's own text
        _keep_source(namespace["loop"], filename, text)
        self.loops[safe] = namespace["loop"]
        return self.loops[safe]

    def unpack(self, out):
        """(the carry's leaves, the ys' leaves) cut from the flat output (or a cotangent)."""
        parts = _unflattened(out, self.shapes)
        return parts[:self.k], parts[self.k:]

    def step(self, carry, x, captured):
        """The body as ops on tensors: the new carry's leaves and a y's, as a tuple."""
        outputs = self.body._with_ops(list(carry) + list(x) + list(captured))
        return tuple(t for t in tree_leaves(outputs) if isinstance(t, Tensor))  # (ys None)

    def backward(self, g, inputs, with_xs):
        """Every input's gradient for the cotangent g of the output: the carries before each
        step are scanned again, then a scan the other way runs the body's vjp at each step,
        carrying the live carries' cotangent (see live) and adding up the closed-over
        tensors'. xs's are stacked only when asked for (with_xs; otherwise None)."""
        k, m = self.k, self.m
        carry, xs, captured = inputs[:k], inputs[k:k + m], inputs[k + m:]
        g_carry, g_ys = self.unpack(g)
        live, reached = self.live(_reached_parts(g, self.shapes))
        if not any(live) and not any(reached):
            return [zeros_like(t) for t in inputs]
        _, befores = scan(lambda c, x: (self.step(c, x, captured)[:k], c), tuple(carry),
                          tuple(xs), length=self.n, reverse=self.reverse)

        def outputs(c, x_t, cap):  # the body's live carries, and its ys that g reached
            out = self.step(c, x_t, cap)
            return tuple(o for o, r in zip(out, live + reached) if r)

        def back(state, x):
            (g_c, g_captured), (c, x_t, g_y) = state, x
            _, pullback = vjp(outputs, c, x_t, captured)
            d_c, d_x, d_captured = pullback(tuple(g_c) + tuple(g_y))
            return (tuple(d for d, r in zip(d_c, live) if r), tuple(
                a + b for a, b in zip(g_captured, d_captured))), (d_x if with_xs else None)
        (g_live, g_closed), g_xs = scan(
            back, (tuple(d for d, r in zip(g_carry, live) if r), tuple(
                zeros_like(t) for t in captured)), (befores, tuple(xs), tuple(
                    y for y, r in zip(g_ys, reached) if r)), length=self.n,
            reverse=not self.reverse)
        g_live = iter(g_live)
        return [next(g_live) if r else zeros_like(c) for c, r in zip(carry, live)] + list(
            g_xs or [None] * m) + list(g_closed)

    def live(self, reached):
        """(live, reached ys): a carry leaf is live if the cotangent reached it at the end or
        the body makes a live carry or a reached y from it (a fixpoint). The vjp runs on
        live carries and reached ys only, as JAX drops the rest (a symbolic zero would
        otherwise meet a derivative: 0 * inf is nan where the answer is the others')."""
        k, depends = self.k, self.depends()
        live, reached_ys = list(reached[:k]), list(reached[k:])
        changed = True
        while changed:
            changed = False
            for out, r in zip(depends, live + reached_ys):
                for i in out:
                    if r and i < k and not live[i]:
                        live[i] = changed = True
        return live, reached_ys

    def depends(self):
        """For each output of the body, the inputs it depends on (their positions)."""
        if self._depends is None:
            deps = {v: {i} for i, v in enumerate(self.body.inputs)}
            for eq in self.body.equations:
                deps[eq.output] = set().union(*[deps.get(v, set()) for v in eq.inputs])
            self._depends = [deps.get(v, set()) for v in self.body.outputs]
        return self._depends

    def rule(self, i):
        with_xs = self.k <= i < self.k + self.m

        def rule(g, out, *inputs):
            key, grads = self._last  # the engine asks for each input in turn, with one g
            if key is None or key[0] is not g or key[1] is not out or (
                    with_xs and grads[i] is None):
                grads = self.backward(g, inputs, with_xs)
                self._last = ((g, out), grads)
            return grads[i]
        return rule


def _reached_parts(g, shapes):
    """For each part of a traced loop's or cond's flat output (see _unflattened), whether
    the cotangent g may be nonzero there: False where g is made by scatter (the vjp of
    the slices that unpack the output) into other parts only, or a sum of such. The vjp
    leaves such a part out, as JAX's symbolic zeros do: the zero would otherwise meet the
    part's derivative, and 0 * inf is nan where the answer is the other parts' alone."""
    def ranges(t):  # [(start, stop)] of g that contributions reached; None: anywhere
        if t.op == "scatter" and len(t.shape) == 1 and len(t.attrs["index"]) == 1 and \
                isinstance(t.attrs["index"][0], slice):
            start, stop, step = t.attrs["index"][0].indices(t.shape[0])
            return [(start, stop)] if step == 1 else None
        if t.op == "add" and t.shape == g.shape:
            parts = [ranges(x) for x in t.inputs]
            return None if None in parts else parts[0] + parts[1]
        return None
    reached, start = ranges(g), 0
    flags = []
    for shape in shapes:
        size = math.prod(shape)
        flags.append(reached is None or any(a < start + size and b > start for a, b in reached))
        start += size
    return flags


def _float_tensors(tree, op):
    """The leaves of a loop's carry or a cond's operands as float64 tensors; None where one
    is None, bool or complex (the loop or cond then runs as Python over rax's ops)."""
    leaves = tree_leaves(tree)
    if any(leaf is None for leaf in leaves):
        return None
    leaves = [_as_any(leaf, op) for leaf in leaves]
    return None if any(t.dtype is not float64 for t in leaves) else leaves


def _unflattened(out, shapes):
    """Tensors of these shapes cut from a flat tensor, one after another (a traced loop's
    or cond's one output)."""
    parts, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(out[start:start + size].reshape(shape))
        start += size
    return parts


def _same_carry(op, before, after):
    """The carry keeps its structure and shapes, as JAX requires of a loop's carry."""
    difference = _structure_difference(before, after, "carry", ("the carry in", "out"))
    shapes = [(None if a is None else _as_any(a, op).shape,  # None: an empty tree, as JAX's
               None if b is None else _as_any(b, op).shape)
              for a, b in zip(tree_leaves(before), tree_leaves(after))]
    if difference or any(a != b for a, b in shapes):
        raise TypeError(f"{op}: the body must return a carry of the structure and shapes it "
                        f"was given: {difference or shapes}")


def fori_loop(lower, upper, body_fun, init_val):
    """jax.lax.fori_loop: val = init_val, then val = body_fun(i, val) for i from lower to
    upper - 1 (Python ints).

    >>> fori_loop(0, 3, lambda i, y: y * 2.0 + i, Tensor(1.0)).item()  # 2, then 5, then 12
    12.0
    """
    _check_function("fori_loop", body_fun)
    lower, upper = _index("fori_loop", "lower", lower), _index("fori_loop", "upper", upper)
    if _current_trace() is not None and upper > lower:  # one equation: a scan over i
        traced = _scan_equation(lambda val, i: (body_fun(i, val), None), init_val,
                                arange(float(lower), float(upper)), upper - lower, False)
        if traced is not None:
            return traced[0]
    val = init_val
    for i in range(lower, upper):
        before, val = val, body_fun(i, val)
        _same_carry("fori_loop", before, val)
    return val


def while_loop(cond_fun, body_fun, init_val):
    """jax.lax.while_loop: val = body_fun(val) while cond_fun(val) is true. Forward only, as
    JAX's: under grad (of a value that init_val depends on) it is a TypeError saying to use
    fori_loop or scan, whose trip counts are fixed. Traced (jit), it is one equation whose
    condition and body are programs, so the trip count is decided on each call.

    >>> while_loop(lambda x: x < 10.0, lambda x: x * 2.0, Tensor(1.0)).item()
    16.0
    """
    _check_function("while_loop", cond_fun)
    _check_function("while_loop", body_fun)
    if _differentiated([leaf for leaf in tree_leaves(init_val) if isinstance(leaf, Tensor)]):
        _while_vjp(None, None)
    if _current_trace() is not None:
        traced = _while_equation(cond_fun, body_fun, init_val)
        if traced is not None:
            return traced
    val = init_val
    while bool(cond_fun(val)):
        before, val = val, body_fun(val)
        _same_carry("while_loop", before, val)
    if _differentiated([leaf for leaf in tree_leaves(val) if isinstance(leaf, Tensor)]):
        _while_vjp(None, None)  # through a tensor the body closes over: as traced, as JAX
    return val


def _while_equation(cond_fun, body_fun, init_val):
    """while_loop in a traced function as ONE equation whose condition and body are
    programs (see _WhileOp), so that the trip count is the arguments'; None where either
    cannot be traced or the carry holds other than float tensors (then it runs as Python,
    and a condition that depends on the arguments is a TraceError)."""
    leaves = _float_tensors(init_val, "while_loop")
    if not leaves:
        return None
    try:
        test, test_captured = _trace(cond_fun, (init_val,), {}, immediate=True, capture=True)
        body, body_captured = _trace(body_fun, (init_val,), {}, immediate=True, capture=True)
    except (TypeError, IndexError):  # TraceError too
        return None
    if len(test.outputs) != 1 or math.prod(test.outputs[0].shape) != 1 or any(
            leaf is not _INPUT for leaf in tree_leaves((test._result, body._result))) or any(
            len(p.inputs) != len(leaves) + len(c) for p, c in ((test, test_captured),
                                                               (body, body_captured))):
        return None
    _same_carry("while_loop", init_val, _rebuild(body._result, iter(
        [_leaf(_full_lists(v.shape, 0.0), v.shape, v.dtype) for v in body.outputs])))
    op = _WhileOp(test, body, len(leaves))
    out = op.forward(*leaves, *test_captured, *body_captured, cond=test, body=body)
    return _rebuild(init_val, iter(op.unpack(out)))


class _WhileOp:
    """One traced while_loop: its condition and its body, programs of the carry's leaves
    and then the tensors each closes over. Its node's inputs are the carry's leaves, the
    condition's closures, the body's; its output is the final carry, flattened (cut apart
    by unpack). Forward only, as JAX's: its vjp rules raise."""

    def __init__(self, test, body, k):
        self.test, self.body, self.k = test, body, k
        self.count = len(test.inputs) - k  # the condition's closures
        self.shapes = [v.shape for v in body.outputs]

        def while_loop(*tensors, cond, body):  # the node's forward, as ops call it
            data = [value for d, shape in zip(self.data(tensors), self.shapes)
                    for value in _flat(d, len(shape))]
            return _node("while_loop", while_loop, data, (len(data),), tensors,
                         (_while_vjp,) * len(tensors), {"cond": cond, "body": body})
        while_loop.made_by_primitive = True  # computed by its own code, not a rule of _RULES
        while_loop.traced_op = self
        self.forward = while_loop

    def data(self, tensors):
        """The final carry's data: the compiled body while the compiled condition holds
        (the whole loop again with the IEEE-safe twins if a C function raises)."""
        k, count = self.k, self.count
        carry = [t.data for t in tensors[:k]]
        test_closures = [t.data for t in tensors[k:k + count]]
        body_closures = [t.data for t in tensors[k + count:]]
        for safe in (False, True):
            test = self.test._compiled.get(safe) or self.test._compile(safe)
            body = self.body._compiled.get(safe) or self.body._compile(safe)
            try:
                values = carry
                while _flat(test(*values, *test_closures)[0], len(self.test.outputs[0].shape))[0]:
                    values = body(*values, *body_closures)
                return values
            except (ArithmeticError, ValueError):
                if safe:
                    raise

    def unpack(self, out):
        """The carry's leaves cut from the flat output."""
        return _unflattened(out, self.shapes)


def _while_vjp(g, out, *inputs):
    raise TypeError("while_loop: reverse-mode differentiation does not work for while_loop "
                    "(its trip count depends on values), as in JAX; use fori_loop or scan, "
                    "which have a fixed trip count. (Forward mode neither: rax's jvp is "
                    "made of two vjps, where JAX's jvp of a while_loop works)")


def cond(pred, true_fun, false_fun, *operands):
    """jax.lax.cond: true_fun(*operands) if pred else false_fun(*operands); pred is a bool or
    a number (nonzero is true), or a tensor of one element. The branch taken gets the
    gradient; numbers it returns come back as tensors (as JAX's arrays). In a traced
    function where pred depends on the arguments, it is one equation whose branches are
    programs (they must have the same structure and shapes), and only the branch taken
    runs, in Python and in NumPy, JAX or PyTorch code alike.

    >>> cond(Tensor(2.0) > 1.0, lambda x: x * 10.0, lambda x: -x, Tensor(3.0)).item()
    30.0
    """
    _check_function("cond", true_fun)
    _check_function("cond", false_fun)
    p = _as_any(pred, "cond")
    if p.size != 1:
        raise ValueError(f"cond: pred must have one element, got shape {p.shape}")
    if _current_trace() is not None and _depends_on_arguments(p):
        traced = _cond_equation(p.reshape(()), true_fun, false_fun, operands)
        if traced is not None:
            return traced
        yes, no = true_fun(*operands), false_fun(*operands)  # a branch that is not a program
        _same_carry("cond", yes, no)
        return tree_map(lambda a, b: where(p.reshape(()), a, b), yes, no)
    taken = true_fun(*operands) if bool(p.item()) else false_fun(*operands)
    return tree_map(lambda v: _as_any(v, "cond") if isinstance(v, numbers.Number) else v,
                    taken)  # numbers as tensors, as JAX's arrays and as where gives them traced


def _cond_equation(pred, true_fun, false_fun, operands):
    """cond in a traced function, pred depending on its arguments, as ONE equation whose
    branches are programs (see _CondOp), so that only the branch taken runs and is
    differentiated, as lax.cond; None where a branch cannot be traced or does not return
    float tensors (then both run and where picks, the select lax.cond is under vmap)."""
    leaves = _float_tensors([leaf for leaf in tree_leaves(operands) if leaf is not None],
                            "cond")  # (a None operand is no input of the branches' programs)
    if leaves is None:
        return None
    try:
        branches = [_trace(fun, tuple(operands), {}, immediate=True, capture=True)
                    for fun in (false_fun, true_fun)]
    except (TypeError, IndexError):  # TraceError too
        return None
    for body, captured in branches:
        if len(body.inputs) != len(leaves) + len(captured) or not body.outputs or any(
                leaf is not _INPUT for leaf in tree_leaves(body._result)) or any(
                v.dtype is not float64 for v in body.outputs):
            return None
    no, yes = (_rebuild(body._result, iter([_leaf(_full_lists(v.shape, 0.0), v.shape)
                                            for v in body.outputs])) for body, _ in branches)
    _same_carry("cond", yes, no)
    op = _CondOp([body for body, _ in branches], len(leaves))
    out = op.forward(pred, *leaves, *branches[0][1], *branches[1][1],
                     false=branches[0][0], true=branches[1][0])
    return _rebuild(branches[1][0]._result, iter(op.unpack(out)))


class _CondOp:
    """One traced cond: its branches (false's program, then true's, so that a bool picks),
    each a program of the operands' leaves and then the tensors it closes over. Its node's
    inputs are pred (0-d), the operands' leaves, false's closures, true's; its output
    holds the branch's outputs flattened one after another (cut apart by unpack)."""

    def __init__(self, branches, n):
        self.branches, self.n_operands = branches, n
        self.vjps, self._last = None, (None, None)
        self.n_false = len(branches[0].inputs) - n  # how many tensors false closes over
        self.shapes = [v.shape for v in branches[0].outputs]

        def cond(pred, *tensors, false, true):  # the node's forward, as ops call it
            taken = bool(pred.data)
            body, inputs = branches[taken], self.inputs(taken, tensors)
            try:
                outputs = (body._compiled.get(False) or body._compile(False))(
                    *[t.data for t in inputs])
            except (ArithmeticError, ValueError):  # as a compiled program redoes it safely
                outputs = (body._compiled.get(True) or body._compile(True))(
                    *[t.data for t in inputs])
            data = [value for d, shape in zip(outputs, self.shapes)
                    for value in _flat(d, len(shape))]
            if self.vjps is None:
                self.vjps = (None,) + tuple(self.rule(i) for i in range(len(tensors)))
            return _node("cond", cond, data, (len(data),), (pred,) + tensors, self.vjps,
                         {"false": false, "true": true})
        cond.made_by_primitive = True  # computed by its own code, not a rule of _RULES
        cond.traced_op = self
        self.forward = cond

    def inputs(self, taken, tensors):
        """The branch's inputs: the operands' leaves and its own closures."""
        n, count = self.n_operands, self.n_false
        return list(tensors[:n]) + list(tensors[n + count:] if taken else
                                        tensors[n:n + count])

    def unpack(self, out):
        """The outputs' tensors cut from the flat output (or a cotangent)."""
        return _unflattened(out, self.shapes)

    def run(self, taken, inputs):
        """The branch as ops on its inputs: its outputs, as a tuple."""
        outputs = self.branches[taken]._with_ops(list(inputs))
        return tuple(t for t in tree_leaves(outputs) if isinstance(t, Tensor))

    def backward(self, g, inputs):
        """The gradients of the operands and of both branches' closures (zeros for the
        branch not taken): a cond whose branches are the branches' vjps."""
        pred, tensors = inputs[0], inputs[1:]
        reached = _reached_parts(g, self.shapes)  # outputs no cotangent reached: left out
        if not any(reached):
            return [None] + [zeros_like(t) for t in tensors]
        g_out = tuple(part for part, r in zip(self.unpack(g), reached) if r)

        def vjp_of(taken):
            def grads(tensors):
                mine = self.inputs(taken, tensors)
                _, pullback = vjp(lambda *t: tuple(o for o, r in zip(
                    self.run(taken, t), reached) if r), *mine)
                d = list(pullback(g_out))
                n, others = self.n_operands, [zeros_like(t) for t in self.inputs(
                    not taken, tensors)[self.n_operands:]]
                return d[:n] + (others + d[n:] if taken else d[n:] + others)
            return grads
        return [None] + list(cond(pred, vjp_of(True), vjp_of(False), tuple(tensors)))

    def rule(self, i):
        def rule(g, out, pred, *inputs):
            key, grads = self._last  # the engine asks for each input in turn, with one g
            if key is None or key[0] is not g or key[1] is not out:
                grads = self.backward(g, (pred,) + inputs)
                self._last = ((g, out), grads)
            return grads[i + 1]
        return rule


__all__ += ["vmap", "scan", "fori_loop", "while_loop", "cond"]


# ============================================================================================
# 9. Tools: your own primitives, gradient checks that point at the guilty op, pictures
#
# primitive makes an op from a forward function and its vjp rules; check_grads compares grad
# with central differences and, on a mismatch, checks each op alone to name the faulty rule;
# draw and to_dot picture a graph and its gradient graph.
# ============================================================================================

__all__ += ["primitive", "check_grads", "draw", "to_dot"]


def primitive(op, forward, vjps):
    """A new primitive op, made from a forward function and one vjp rule per input.

    forward(*inputs, **attrs) computes the value from the input tensors, with rax ops
    (their graph is dropped: the result is a single node) or with nested lists; it may
    return a Tensor, a nested list or a number. vjps[i](g, out, *inputs) is the gradient
    for input i given g, the gradient of out, written with rax ops (None if no gradient
    flows), exactly like the rules of rax's own primitives. Keyword arguments of the new
    op are passed to forward and kept as the node's attrs.

    >>> softplus = primitive("softplus", lambda x: log(1.0 + exp(x)),
    ...                      [lambda g, out, x: g * sigmoid(x)])
    >>> x = Tensor([0.0, 2.0])
    >>> y = softplus(x)
    >>> y.op, y.inputs[0] is x
    ('softplus', True)
    >>> [f"{v:.4f}" for v in grad(lambda x: softplus(x).sum())(x).tolist()]
    ['0.5000', '0.8808']
    """
    if not isinstance(op, str):
        raise TypeError(f"primitive: the op's name must be a str, got {op!r}")
    if not callable(forward):
        raise TypeError(f"primitive {op!r}: forward must be a function, got {forward!r}")
    if not isinstance(vjps, (list, tuple)):
        raise TypeError(f"primitive {op!r}: vjps must be a list with one rule (or None) per "
                        f"input, got {vjps!r}")
    vjps = tuple(vjps)
    for i, rule in enumerate(vjps):
        if rule is not None and not callable(rule):
            raise TypeError(f"primitive {op!r}: vjps[{i}] must be a function or None, "
                            f"got {rule!r}")

    def new_op(*inputs, **attrs):
        if len(inputs) != len(vjps):
            raise TypeError(f"{op}: takes {len(vjps)} input(s), one per vjp rule, "
                            f"got {len(inputs)}")
        inputs = tuple(_as_num(t, op) for t in inputs)  # float64 or complex128
        # While tracing, forward runs outside the trace: the program calls it again on new
        # inputs, so it may read their values (tolist(), float()) and its graph is dropped.
        state, _this_thread.trace = getattr(_this_thread, "trace", None), None
        try:
            value = forward(*inputs, **attrs)
        except Exception as error:
            _add_note(error, f"in the forward function of {op!r} ({_source_location(forward)})")
            raise
        finally:
            _this_thread.trace = state
        value = _as_num(value, f"{op} (the value forward returned)")
        return _node(op, new_op, value.data, value.shape, inputs, vjps,
                     MappingProxyType(dict(attrs)) if attrs else _NO_ATTRS, value.dtype)

    new_op.__name__ = new_op.__qualname__ = op
    new_op.__doc__ = forward.__doc__
    new_op.made_by_primitive = True  # check_grads then also checks inputs without a rule
    return new_op


def _add_note(error, note):
    """Say where an error from user code came from (Python 3.11 prints notes below it)."""
    if hasattr(error, "add_note"):
        error.add_note(note)


def _source_location(fn):
    """'file.py, line 12' for a function defined in Python, else its name."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__name__", repr(fn))
    return f"{code.co_filename}, line {code.co_firstlineno}"


def check_grads(f, args, eps=1e-6, atol=1e-6, rtol=1e-5, directions=None, rng=0,
                modes=("rev",), order=1):
    """Check f's derivatives against central differences, for every Tensor leaf of args.

    f(*args) must return a tensor with one element. Each element x of each Tensor leaf is
    checked: |analytic - numeric| <= atol + rtol * |numeric|, where numeric is
    (f(x + eps) - f(x - eps)) / (2 eps). The defaults are tight enough that a wrong rule
    cannot pass on a smooth function: in float64, central differences with eps = 1e-6 are
    right to about 1e-10 of the values (truncation eps**2, rounding 1e-16 / eps), so a right
    rule passes with room to spare, and a wrong one must be within 1e-5 of the truth
    (torch.autograd.gradcheck's rtol of 1e-3 lets a 0.05% error through).
    With directions=k, each leaf is checked instead along k random directions v, one
    comparison each whatever its size: <grad, v> against (f(x + eps v) - f(x - eps v)) / 2eps.
    modes says how the analytic side is found, as HIPS autograd's check_grads: "rev" by grad
    (backward), "fwd" by jvp. order=2 also checks the derivative of the derivative: the same
    checks on x -> <grad f(x), w> for a random w (and so on for higher orders).

    On a mismatch it raises AssertionError naming the argument (args[0]['w']), the index
    and both values; then it checks the vjp rule of every op of f's graph on that op alone,
    and names the first one that is wrong, with the file and line of the rule.

    >>> check_grads(lambda x, y: (x * y.exp()).sum(), (Tensor([1.0, 2.0]), Tensor([0.5, -1.0])),
    ...             modes=("fwd", "rev"), order=2)
    >>> bad_square = primitive("bad_square", lambda x: x * x, [lambda g, out, x: g * x])
    >>> check_grads(lambda x: bad_square(x).sum(), (Tensor([3.0]),))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: check_grads: d f / d args[0] at [0] is 3.0 by backward, but 6.0...
    """
    _check_function("check_grads", f)
    _check_check_grads_arguments(args, eps, atol, rtol, directions, modes, order)
    args, rng = tuple(args), _as_rng(rng)
    if not args:
        return  # nothing to differentiate
    for level in range(1, order + 1):
        for mode in modes:
            _check_first_order(f, args, (eps, atol, rtol), directions, rng, mode, level)
        if level < order:
            f = _directional_derivative(f, args, rng)


def _directional_derivative(f, args, rng):
    """x -> <grad f(x), w> for a random w: its gradient is f's Hessian times w, so checking
    it checks f's second derivatives."""
    weights = [_leaf(_fold(list(_probes("", leaf, 1, rng)[0][1]), leaf.shape), leaf.shape,
                     leaf.dtype) if isinstance(leaf, Tensor) else None
               for leaf in tree_leaves(args)]

    def derivative(*args):  # (the real part: <g, w> is Re(g w) for complex leaves, 5h)
        gradients = tree_leaves(grad(f, argnums=tuple(range(len(args))))(*args))
        pairs = [(g, w) for g, w in zip(gradients, weights) if w is not None]
        return real(_sum_of_products(*zip(*pairs))) if pairs else _constant(0.0)

    return derivative


def _check_first_order(f, args, tolerances, directions, rng, mode, level):
    """One mode's check of f's first derivatives, f being check_grads' own f at level 1 and
    its directional derivative of order level - 1 above that."""
    eps, atol, rtol = tolerances
    items = [(_path("args", keys), leaf) for keys, leaf in _leaves_with_keys(args)]
    if mode == "rev":
        gradients = tree_leaves(grad(f, argnums=tuple(range(len(args))))(*args))
    else:
        out, push_forward = _linearize("check_grads", f, args)
        if not isinstance(out, Tensor) or out.size != 1:
            what = f"shape {out.shape}" if isinstance(out, Tensor) else type(out).__name__
            raise TypeError(f"check_grads: f must return a Tensor with one element, "
                            f"got {what}")
        zero = [_filled(leaf.shape, _ZERO_OF[leaf.dtype]) if isinstance(leaf, Tensor) else
                _filled((), 0.0) for _, leaf in items]

    def f_with(position, new_leaf):  # f(*args) with leaf number `position` replaced
        leaves = [new_leaf if k == position else leaf for k, (_, leaf) in enumerate(items)]
        return _as_tensor(f(*_rebuild(args, iter(leaves))), "check_grads").item()

    def analytic(position, direction):  # the derivative along direction, by grad or jvp
        if mode == "rev":
            flat = _flat(gradients[position].data, gradients[position].ndim)
            if isinstance(direction, int):
                return flat[direction]
            if isinstance(direction, tuple):  # JAX's convention: <g, v> is Re(g v) (5h)
                return (flat[direction[0]] * direction[1]).real
            return _sum(map(operator.mul, flat, direction)).real
        tangents = zero[:position] + [_moved(zero[position], direction, 1.0)] + \
            zero[position + 1:]
        return push_forward(_rebuild(args, iter(tangents))).item()

    by = "by backward" if mode == "rev" else "by forward mode (jvp)"
    if level > 1:
        by += (f", for the derivative of order {level} (f here is x -> <grad f(x), w> "
               f"for a random w, {level - 1} time(s) over)")
    for position, (path, leaf) in enumerate(items):
        if not isinstance(leaf, Tensor):
            continue
        probes = _probes(path, leaf, directions, rng)
        for what, direction in probes:
            value = analytic(position, direction)
            numeric = (f_with(position, _moved(leaf, direction, eps))
                       - f_with(position, _moved(leaf, direction, -eps))) / (2.0 * eps)
            if not _close(value, numeric, atol, rtol):
                raise AssertionError(
                    f"check_grads: {what} is {value!r} {by}, but {numeric!r} by "
                    f"central differences (eps={eps}, atol={atol}, rtol={rtol}).\n"
                    + _blame(f, args, eps, atol, rtol, rng, mode == "rev" and level == 1))


def _probes(path, leaf, directions, rng):
    """The directions in which check_grads compares a leaf's derivatives: (what, direction)
    for each element, and for a complex element its real and its imaginary direction; or
    `directions` random vectors (complex ones for a complex leaf)."""
    if directions is None:  # each element on its own
        if leaf.dtype is complex128:
            return [(f"d f / d {path} at {_index_of(j, leaf.shape)} along {part}", (j, unit))
                    for j in range(leaf.size) for part, unit in (("1", 1.0), ("1j", 1j))]
        return [(f"d f / d {path} at {_index_of(j, leaf.shape)}", j) for j in range(leaf.size)]
    return [(f"along a random direction v, <d f / d {path}, v>", _gauss_like(leaf, rng))
            for _ in range(directions)]


def _check_check_grads_arguments(args, eps, atol, rtol, directions, modes, order):
    if isinstance(args, Tensor) or not isinstance(args, (tuple, list)):
        raise TypeError(f"check_grads: args must be a tuple of f's arguments, such as (x,), "
                        f"got {type(args).__name__}")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"check_grads: {name} must be a number, got {value!r}")
        value = _scalar("check_grads", name, value)  # 10 ** 400 is too large: a ValueError
        if not (math.isfinite(value) and value >= 0.0) or (name == "eps" and value == 0.0):
            raise ValueError(f"check_grads: {name} must be finite and "
                             f"{'> 0' if name == 'eps' else '>= 0'}, got {value!r}")
    if directions is not None and (isinstance(directions, bool) or
                                   not isinstance(directions, int) or directions < 1):
        raise ValueError(f"check_grads: directions must be None or a positive int, "
                         f"got {directions!r}")
    if isinstance(modes, str) or not isinstance(modes, (tuple, list)) or not modes or any(
            mode not in ("fwd", "rev") for mode in modes):
        raise ValueError(f"check_grads: modes must be a tuple of 'fwd' and 'rev', "
                         f"got {modes!r}")
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
        raise ValueError(f"check_grads: order must be a positive int, got {order!r}")


def _blame(f, args, eps, atol, rtol, rng, first_order_rev=True):
    """Check each op of f's graph on its own, inputs first, and describe the first op whose
    vjp rule disagrees with central differences of that op's forward function."""
    out = f(*args)
    nodes = [t for t in _topological_order(out) if t.forward is not None]
    for number, node in enumerate(nodes, 1):
        w_flat = _gauss_like(node, rng)  # a random cotangent (complex for a complex node)
        w = _leaf(_fold(w_flat, node.shape), node.shape, node.dtype)
        shapes = ", ".join(str(t.shape) for t in node.inputs)
        op = f"op {node.op!r} (op {number} of {len(nodes)}, inputs of shapes {shapes})"

        def local(i, new_input):  # <w, node's op applied with input i replaced>
            inputs = node.inputs[:i] + (new_input,) + node.inputs[i + 1:]
            value = node.forward(*inputs, **node.attrs)  # (the pairing is Re(w v): 5h)
            return _sum(map(operator.mul, w_flat, _flat(value.data, value.ndim))).real

        def numeric(i, direction):
            x = node.inputs[i]
            return (local(i, _moved(x, direction, eps))
                    - local(i, _moved(x, direction, -eps))) / (2.0 * eps)

        for i, (x, rule) in enumerate(zip(node.inputs, node.vjps)):
            if rule is None and not getattr(node.forward, "made_by_primitive", False):
                continue  # rax's own ops pass no gradient there on purpose (x < y, where's cond)
            if rule is None:
                analytic_flat = [0.0] * x.size
            else:
                analytic = _as_num(rule(w, node, *node.inputs), node.op)
                if analytic.shape != x.shape:
                    return (f"The vjp rule of {op} for input {i} ({_source_location(rule)}) "
                            f"gives shape {analytic.shape}, but that input has shape {x.shape}.")
                analytic_flat = _flat(analytic.data, analytic.ndim)
            v = _gauss_like(x, rng)  # one look along a random line,
            if _close(_sum(map(operator.mul, analytic_flat, v)).real, numeric(i, v), atol, rtol):
                continue  # and element by element only to say where it is wrong
            for j, unit in _units(x):
                expected = numeric(i, (j, unit))
                if _close((analytic_flat[j] * unit).real, expected, atol, rtol):
                    continue
                if rule is None:
                    return (f"The first op whose gradient disagrees with central differences "
                            f"on that op alone is {op}: it has no vjp rule for input {i}, yet "
                            f"its output depends on that input (at {_index_of(j, x.shape)}, "
                            f"central differences give {expected!r}).")
                along = " along 1j" if unit == 1j else ""
                return (f"The first op whose vjp rule disagrees with central differences "
                        f"on that op alone is {op}: for input {i} at "
                        f"{_index_of(j, x.shape)}{along}, with a random cotangent, the rule "
                        f"gives {(analytic_flat[j] * unit).real!r} but central differences "
                        f"give {expected!r}. "
                        f"The rule is at {_source_location(rule)}. (Unless the input sits on "
                        f"a kink, such as relu at 0, where no derivative exists.)")
    if not first_order_rev:  # forward mode, or a derivative of a derivative
        return ("Every op's vjp rule agrees with central differences on that op alone. Forward "
                "mode and higher derivatives differentiate the rules themselves, so look for a "
                "vjp rule that is right but not differentiable as written (one that uses "
                "stop_gradient, or floats read out of tensors), or a kink near the point.")
    return ("Every op's vjp rule agrees with central differences on that op alone, so look "
            "at f itself: a kink (relu, abs, max at a tie) near the point, an eps too large "
            "or too small for f, or randomness or changing state inside f.")


def _gauss_like(t, rng):
    """t.size random normal numbers (complex ones, both parts normal, for a complex t)."""
    if t.dtype is complex128:
        return [complex(rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)) for _ in range(t.size)]
    return [rng.gauss(0.0, 1.0) for _ in range(t.size)]


def _units(t):
    """(flat position, unit) for each direction of each element: 1, and 1j if complex."""
    units = (1.0, 1j) if t.dtype is complex128 else (1.0,)
    return [(j, unit) for j in range(t.size) for unit in units]


def _topological_order(root):
    """Every node of root's graph once, each after its inputs: leaves first, root last.
    A walk with a stack, so deep graphs are fine."""
    order, expanded = [], set()
    stack = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
        elif t not in expanded:
            expanded.add(t)
            stack.append((t, True))
            stack.extend((x, False) for x in reversed(t.inputs) if x not in expanded)
    return order


def _moved(t, direction, step):
    """A leaf like t moved by `step` along `direction`: the flat position of one element,
    (that position, 1j) for the imaginary direction of a complex element, or a vector of
    t's size in row-major order."""
    flat = list(_flat(t.data, t.ndim))
    if isinstance(direction, int):
        flat[direction] += step
    elif isinstance(direction, tuple):
        flat[direction[0]] += step * direction[1]
    else:
        flat = [a + step * b for a, b in zip(flat, direction)]
    return _leaf(_fold(flat, t.shape), t.shape, t.dtype)


def _index_of(j, shape):
    """The multi-index of flat position j in a tensor of `shape`, as text: [1, 2]."""
    index = []
    for n in reversed(shape):
        j, i = divmod(j, n)
        index.append(i)
    return str(index[::-1])


def _close(analytic, numeric, atol, rtol):
    if analytic == numeric:  # also equal infinities
        return True
    return _abs(analytic - numeric) <= atol + rtol * _abs(numeric)


def draw(t, grads=None, names=None, max_nodes=200):
    """A text picture of t's graph: t first, and below each node its inputs, indented.

    Each line shows a node's number, op (or the leaf's name from `names`, a tree of
    tensors such as params), shape and values; with `grads`, the gradient graph from
    backward, each node's gradient stands beside its value. A node reached a second time
    is not drawn again but referred to by its number. A graph of more than max_nodes nodes
    gets a one-line summary instead (None: no limit).

    >>> w = Tensor([1.0, -2.0])
    >>> loss = (w * w).sum()
    >>> print(draw(loss, loss.backward(), names={"w": w}))
    #0 sum(axis=(0,)) ()    5        grad 1
    `-- #1 mul (2,)         [1, 4]   grad [1, 1]
        |-- #2 w (2,)       [1, -2]  grad [2, -4]
        `-- #2 (see above)
    """
    _check_picture_arguments("draw", t, grads, max_nodes)
    nodes = _topological_order(t)
    if max_nodes is not None and len(nodes) > max_nodes:
        return _too_big(nodes, max_nodes)
    labels = _labels(names)
    number_of, rows = {}, []  # rows: (tree text, value text, gradient text)
    stack = [(t, "", "")]  # (node, what precedes it on its line, what precedes its inputs)
    while stack:
        node, head, indent = stack.pop()
        if node in number_of:
            rows.append((f"{head}#{number_of[node]} (see above)", "", ""))
            continue
        number_of[node] = len(number_of)
        gradient = "" if grads is None else "grad " + _summary(grads[node])
        rows.append((f"{head}#{number_of[node]} {_describe(node, labels)} {node.shape}",
                     _summary(node), gradient))
        last = len(node.inputs) - 1
        for k in reversed(range(len(node.inputs))):
            stack.append((node.inputs[k], indent + ("`-- " if k == last else "|-- "),
                          indent + ("    " if k == last else "|   ")))
    tree_width = _max(len(row[0]) for row in rows)
    value_width = _max(len(row[1]) for row in rows)
    return "\n".join(f"{tree:<{tree_width}}  {value:<{value_width}}  {gradient}".rstrip()
                     for tree, value, gradient in rows)


def to_dot(t, grads=None, names=None, max_nodes=2000):
    """Graphviz DOT text for t's graph (render it with `dot -Tsvg graph.dot -o graph.svg`).

    Each node shows its op (or leaf name from `names`), shape and values, and arrows run
    from inputs to the ops that use them, numbered 0, 1, ... where an op has several. With
    `grads`, the gradient graph from backward stands beside it, node for node, its arrows
    pointing the way gradients flow. A graph of more than max_nodes nodes (None: no limit)
    becomes one box with a summary.

    >>> x = Tensor(2.0)
    >>> print(to_dot(x * x))  # doctest: +ELLIPSIS
    digraph rax {
    ...
      n0 -> n1 [label=0];
      n0 -> n1 [label=1];
    }
    """
    _check_picture_arguments("to_dot", t, grads, max_nodes)
    labels = _labels(names)
    nodes = _topological_order(t)
    header = ["digraph rax {", "  rankdir=BT;",
              '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, '
              'fontsize=10];']
    if max_nodes is not None and len(nodes) > max_nodes:
        return "\n".join(header + [f"  n0 [label={_dot_text(_too_big(nodes, max_nodes))}];",
                                   "}"])
    number = {node: k for k, node in enumerate(nodes)}
    lines = header + ["  subgraph cluster_forward {", '    label="forward graph";']
    for node, k in number.items():
        shape = "ellipse" if node.op is None else "box"
        text = f"{_describe(node, labels)}\n{node.shape}\n{_summary(node)}"
        lines.append(f"    n{k} [label={_dot_text(text)}, shape={shape}];")
    lines.append("  }")
    if grads is not None:
        lines += ["  subgraph cluster_gradient {", '    label="gradient graph";']
        for node, k in number.items():
            text = f"d/d {_describe(node, labels)}\n{node.shape}\n{_summary(grads[node])}"
            lines.append(f"    g{k} [label={_dot_text(text)}, fillcolor=lightyellow];")
        lines.append("  }")
    for node, k in number.items():
        for i, x in enumerate(node.inputs):
            label = f" [label={i}]" if len(node.inputs) > 1 else ""
            lines.append(f"  n{number[x]} -> n{k}{label};")
            if grads is not None:  # laid out like the forward edge, drawn pointing back
                lines.append(f"  g{number[x]} -> g{k} [dir=back, color=darkorange];")
    lines.append("}")
    return "\n".join(lines)


def _check_picture_arguments(op, t, grads, max_nodes):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: t must be a Tensor, got {t!r} ({type(t).__name__})")
    if grads is not None and not isinstance(grads, GradNode):
        raise TypeError(f"{op}: grads must be the gradient graph that backward returns (a "
                        f"GradNode), got {type(grads).__name__}")
    if max_nodes is not None and (isinstance(max_nodes, bool) or
                                  not isinstance(max_nodes, numbers.Integral)):
        raise TypeError(f"{op}: max_nodes must be an int or None, got {max_nodes!r}")


def _summary(t, digits=4):
    """A few words for a tensor's values: all of them when there are few, else statistics."""
    flat = _flat(t.data, t.ndim)
    if t.size <= 4:
        return _format_nested(t.data, t.ndim, digits)
    if t.dtype is bool_:
        return f"{_sum(flat)} of {len(flat)} true"
    mean_value = _sum(flat) / len(flat)
    return (f"mean {mean_value:.{digits}g}, min {_min_of(flat):.{digits}g}, "
            f"max {_max_of(flat):.{digits}g}")


def _format_nested(data, ndim, digits):
    if ndim == 0:
        return repr(data) if type(data) is bool else format(data, f".{digits}g")
    return "[" + ", ".join(_format_nested(row, ndim - 1, digits) for row in data) + "]"


def _labels(names):
    """{tensor: name} from a tree of tensors, such as params: its keys joined by dots."""
    if names is None:
        return {}
    return {leaf: ".".join(map(str, keys))
            for keys, leaf in _leaves_with_keys(names) if isinstance(leaf, Tensor)}


def _describe(t, labels):
    """The op of t with its static arguments, or the leaf's name."""
    if t.op is None:
        return labels.get(t, "constant" if t.attrs.get("constant") else "leaf")
    # keepdims=False is the default: leaving it out keeps the lines short.
    attrs = ", ".join(f"{key}={value}" for key, value in t.attrs.items() if value is not False)
    return f"{t.op}({attrs})" if attrs else t.op


def _too_big(nodes, max_nodes):
    counts = {}
    for t in nodes:
        counts[t.op or "leaf"] = counts.get(t.op or "leaf", 0) + 1
    ops = ", ".join(f"{op} {n:,}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    root = nodes[-1]
    return (f"a graph of {len(nodes):,} nodes, more than max_nodes={max_nodes} to draw: "
            f"{ops}; the root is {_describe(root, {})} of shape {root.shape}")


def _dot_text(text):
    """text as a quoted DOT string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ---- 9a. rax.testing: property tests of your own gradients -----------------------------------
#
# What rax's own test suite uses to test rax, given to you, as numpy.testing and
# hypothesis.extra.numpy are: hypothesis strategies for shapes, tensors and trees that reach
# the cases that break implementations (rank 4 and more, sides of 0, broadcasting, inf, nan,
# -0.0, 1e308, 5e-324), comparisons that say where two tensors differ, and check_vjp and
# check_jvp, which test a hand-derived rule against rax's own. Hypothesis is imported when
# a strategy is first built, never by `import rax`; the comparisons and checks need nothing.

_SPECIAL_FLOATS = (inf, -inf, nan, -0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324)


def _strategies():
    """hypothesis.strategies, imported now (a strategy is being built)."""
    try:  # by name: rax.py's own imports are the standard library's alone
        strategies = importlib.import_module("hypothesis.strategies")
    except ImportError:
        raise ImportError("rax.testing's strategies are hypothesis strategies: pip install "
                          "hypothesis (the comparisons and check_vjp need nothing)") from None
    return strategies


def _testing_shapes(min_rank=0, max_rank=5, min_side=0, max_side=5, max_size=64):
    """A hypothesis strategy for shapes: rank min_rank..max_rank, drawn 4 or more half the
    time (kernels recurse once per axis: their bugs show from rank 4 on), sides
    max(min_side, 1)..max_side, and, when min_side is 0, one side of 0 in one shape of ten.
    A side that would take the size past max_size becomes 1 (None: no bound)."""
    st = _strategies()

    @st.composite
    def shapes(draw):
        high = st.integers(_max(min_rank, 4), max_rank) if max_rank >= _max(min_rank, 4) \
            else st.nothing()
        rank = draw(st.integers(min_rank, max_rank) | high)
        sides, size = [1] * rank, 1
        for axis in draw(st.permutations(range(rank))):
            side = draw(st.integers(_max(min_side, 1), _max(max_side, 1)))
            sides[axis] = side if max_size is None or size * side <= max_size else 1
            size *= sides[axis]
        if min_side == 0 and rank and draw(st.integers(0, 9)) == 0:
            sides[draw(st.integers(0, rank - 1))] = 0
        return tuple(sides)
    return shapes()


def _broadcastable_shapes(shape, min_rank=0, max_rank=None, min_side=1, max_side=None):
    """A strategy for shapes that broadcast with `shape` (as hypothesis.extra.numpy's): each
    side of shape kept or made 1 (a 1 of shape may grow), and any leading axes beyond it."""
    st = _strategies()
    shape = _as_shape("broadcastable_shapes", shape)
    max_rank = _max(len(shape), min_rank) if max_rank is None else max_rank
    max_side = _max([min_side + 2, *shape]) if max_side is None else max_side

    @st.composite
    def shapes(draw):
        rank = draw(st.integers(min_rank, max_rank))
        out = []
        for i in range(rank):
            aligned = i - (rank - len(shape))  # the axis of shape this one meets, if any
            if aligned < 0 or shape[aligned] == 1:
                out.append(draw(st.integers(min_side, max_side) | st.just(1)))
            else:
                out.append(draw(st.sampled_from([shape[aligned], 1])))
        return tuple(out)
    return shapes()


_BroadcastableShapes = collections.namedtuple("BroadcastableShapes",
                                              "input_shapes result_shape")


def _mutually_broadcastable_shapes(num, min_rank=0, max_rank=5, min_side=1, max_side=3,
                                   max_size=64):
    """A strategy for `num` shapes that broadcast together, as hypothesis.extra.numpy's:
    (input_shapes, result_shape). Each is a suffix of the result (its full rank half the
    time) with some sides 1, so that sides of 1 stretch in place and in front."""
    st = _strategies()

    @st.composite
    def shapes(draw):
        result = draw(_testing_shapes(min_rank, max_rank, min_side, max_side, max_size))
        inputs = []
        for _ in range(num):
            rank = draw(st.integers(0, len(result)) | st.just(len(result)))
            inputs.append(tuple(1 if draw(st.integers(0, 3)) == 0 else n
                                for n in result[len(result) - rank:]))
        return _BroadcastableShapes(tuple(inputs), _broadcast_shapes("shapes", *inputs, ()))
    return shapes()


def _testing_floats(lo=None, hi=None, special=False):
    """A strategy for floats in [lo, hi] (None: no bound; never inf or nan), and with
    special=True, one in four of inf, -inf, nan, -0.0, 0.0, +-1e308, +-5e-324 whatever the
    bounds, since these are what break code."""
    st = _strategies()
    plain = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.one_of(plain, plain, plain, st.sampled_from(_SPECIAL_FLOATS)) if special \
        else plain


def _testing_tensors(shape=None, elements=None, dtype="float64"):
    """A strategy for tensors of `shape` (a tuple or a strategy of them; default shapes())
    with elements from `elements` (default floats(-10, 10); booleans for dtype "bool")."""
    st = _strategies()
    dtype = _as_dtype(dtype, "tensors")
    shape = _testing_shapes() if shape is None else shape
    shape = shape if hasattr(shape, "example") else st.just(_as_shape("tensors", shape))
    if elements is None:
        elements = st.booleans() if dtype is bool_ else _testing_floats(-10.0, 10.0)
        if dtype is complex128:  # both parts drawn
            elements = st.builds(complex, elements, elements)

    @st.composite
    def tensors(draw):
        sides = draw(shape)
        n = math.prod(sides)
        flat = draw(st.lists(elements, min_size=n, max_size=n))
        if 0 in sides:  # no values: the data of an empty shape, made as rax makes it
            return _leaf(_full_lists(sides, _ZERO_OF[dtype]), sides, dtype)
        t = Tensor(_fold(flat, sides))  # checks the values, and reads them as floats
        return t if t.dtype is dtype else t.astype(dtype)
    return tensors()


def _testing_trees(leaves=None, max_leaves=6):
    """A strategy for trees, as params are: dicts (string keys), lists and tuples nested,
    with leaves from `leaves` (default tensors of rank 0-3)."""
    st = _strategies()
    leaves = _testing_tensors(_testing_shapes(max_rank=3, max_size=16)) if leaves is None \
        else leaves
    keys = st.text("abcdefgh", min_size=1, max_size=3)
    return st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                        | st.tuples(children, children)
                        | st.dictionaries(keys, children, max_size=3), max_leaves=max_leaves)


def _cotangents(shape, rng=0):
    """A tensor of `shape` with standard normal values from rng (a seed or a random.Random):
    a cotangent (or tangent) to test a rule with."""
    shape, rng = _as_shape("cotangents", shape), _as_rng(rng)
    return _leaf(_fold([rng.gauss(0.0, 1.0) for _ in range(math.prod(shape))], shape)
                 if 0 not in shape else _full_lists(shape, 0.0), shape)


def _cotangents_like(tree, rng=0):
    """Random cotangents shaped like a tensor or like each tensor of a tree (see cotangents);
    complex ones, both parts normal, for a complex tensor."""
    rng = _as_rng(rng)
    return tree_map(lambda leaf: _cotangent_like(_as_num(leaf, "cotangents_like"), rng), tree)


def _cotangent_like(t, rng):
    if t.dtype is not complex128:
        return _cotangents(t.shape, rng)
    return _complex(_cotangents(t.shape, rng), _cotangents(t.shape, rng))


def _assert_allclose(actual, expected, rtol=1e-7, atol=0.0, equal_nan=True, err_msg="", *,
                     names=("actual", "expected"), strict=False):
    """Assert that actual and expected (tensors, arrays, numbers, or trees of them) are
    close, as numpy.testing.assert_allclose: |actual - expected| <= atol + rtol |expected|
    elementwise (of equal shapes, or one a number), infinities only equal to themselves, nan
    equal to nan when equal_nan. The AssertionError names the path in the tree, how many
    elements differ, and the worst one: its index and both values (called `names`). With
    strict=True the shapes must be equal, a number stretching nowhere (numpy's strict)."""
    for value, name in ((rtol, "rtol"), (atol, "atol")):
        if not (isinstance(value, numbers.Real) and value >= 0.0):
            raise ValueError(f"assert_allclose: {name} must be a number >= 0, got {value!r}")
    for path, a, e in _leaf_pairs(actual, expected, "assert_allclose", err_msg, names[0]):
        if strict and a[1] != e[1]:
            raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{path}: shapes {a[1]} "
                                 f"and {e[1]} differ (strict)")
        shape, pairs = _broadcast_pairs(path, a, e, err_msg)
        worst, bad = None, 0
        for i, (x, y) in enumerate(pairs):
            if x != x or y != y:
                ok, excess = equal_nan and x != x and y != y, inf
            elif _abs(x) == inf or _abs(y) == inf:
                ok, excess = x == y, inf
            else:  # (compared as written: 2e308 <= 3e308 holds where a difference is inf)
                ok = _abs(x - y) <= atol + rtol * _abs(y)
                excess = _abs(x - y) / (atol + rtol * _abs(y) or 1e-300)
            if not ok:
                bad += 1
                if worst is None or excess > worst[0]:
                    worst = (excess, i, x, y)
        if worst is not None:
            _, i, x, y = worst
            where = f" at index {_index_of(i, shape)}" if shape else ""
            raise AssertionError(
                f"{err_msg + ': ' if err_msg else ''}{path} is not close to {names[1]}: {bad} "
                f"of {len(pairs)} elements differ (rtol={rtol}, atol={atol}); the worst"
                f"{where}: {names[0]} {x!r}, {names[1]} {y!r}")


def _assert_equal(actual, expected, err_msg=""):
    """Assert that actual and expected (tensors, arrays, numbers, or trees of them) are
    equal bit for bit: the same shapes and dtypes, the same floats, the signs of zeros
    included; any nan equals any nan. The AssertionError names the path and the index."""
    for path, a, e in _leaf_pairs(actual, expected, "assert_equal", err_msg):
        head = f"{err_msg + ': ' if err_msg else ''}{path}"
        if a[1] != e[1] or a[2] is not e[2]:
            raise AssertionError(f"{head}: actual has shape {a[1]} and dtype {a[2]}, "
                                 f"expected shape {e[1]} and dtype {e[2]}")
        for i, (x, y) in enumerate(zip(_flat(a[0], len(a[1])), _flat(e[0], len(e[1])))):
            same = (x != x and y != y) or (x == y and math.copysign(1.0, x) ==
                                           math.copysign(1.0, y))
            if not same:
                where = f" at index {_index_of(i, a[1])}" if a[1] else ""
                raise AssertionError(f"{head} differs{where}: actual {x!r}, expected {y!r}")


def _leaf_pairs(actual, expected, op, err_msg, path="actual"):
    """[(path, (data, shape, dtype) of actual's leaf, expected's), ...]: the two trees walked
    together; where either is a tensor, an array or a number, both are read as arrays."""
    def is_leaf(v):
        return not isinstance(v, (dict, list, tuple)) or (
            isinstance(v, (list, tuple)) and not _holds_tensor(v) and _is_numbers(v))
    if is_leaf(actual) or is_leaf(expected):
        try:
            return [(path, _as_lists(actual), _as_lists(expected))]
        except (TypeError, ValueError) as error:
            raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{op}: {path} cannot be "
                                 f"compared: {error}") from None
    difference = _structure_difference(actual, expected, path, ("actual", "expected"))
    if difference and not isinstance(actual, (list, tuple)) == isinstance(expected, (
            list, tuple)):
        raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{op}: {difference}")
    a_children = _children(actual, op, "actual", ())
    e_children = dict(_children(expected, op, "expected", ()))
    if [k for k, _ in a_children] != list(e_children):
        raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{op}: the trees differ in "
                             f"structure at {path}: {difference}")
    return [pair for key, child in a_children for pair in _leaf_pairs(
        child, e_children[key], op, err_msg, _path(path, (key,)))]


def _is_numbers(v):
    try:
        _to_lists(v, "compare")
        return True
    except (TypeError, ValueError):
        return False


def _as_lists(value):
    """(data, shape, dtype) of a tensor, an array, a number or nested lists of numbers."""
    if isinstance(value, Tensor):
        _check_readable(value, "rax.testing")
        return value.data, value.shape, value.dtype
    return _to_lists(value, "compare")


def _broadcast_pairs(path, a, e, err_msg):
    """(the broadcast shape, [(actual, expected) float pairs]) of two leaves."""
    if a[1] != e[1] and a[1] and e[1]:  # only a number stretches, as in NumPy's
        raise AssertionError(f"{err_msg + ': ' if err_msg else ''}{path}: shapes {a[1]} and "
                             f"{e[1]} mismatch")
    shape = a[1] or e[1]
    flat = [[v if type(v) is complex else float(v)  # (a complex pair: |x - y| below)
             for v in _flat(broadcast_lists(d, s, shape), len(shape))] for d, s, _ in (a, e)]
    return shape, list(zip(*flat))


def _check_vjp(f, f_vjp, args, cotangent=None, rtol=1e-7, atol=1e-12):
    """Check a hand-written vjp, f_vjp(cotangent, *args) -> one gradient per argument
    (shaped like it; a bare gradient for one argument), against rax's reverse mode of f at
    args, with `cotangent` (default: random, cotangents_like(f(*args))). On a mismatch the
    AssertionError names the argument, the index and both values, then says whether rax's
    own graph of f agrees with central differences op by op (so the hand rule is wrong)
    or which op of it does not."""
    args = _checked_args("check_vjp", f, f_vjp, args)
    out, vjp_fn = vjp(f, *args)
    cotangent = _cotangents_like(out) if cotangent is None else cotangent
    expected = vjp_fn(cotangent)
    got = f_vjp(cotangent, *args)
    got = (got,) if len(args) == 1 and not (isinstance(got, tuple) and len(got) == 1) else got
    if not isinstance(got, (tuple, list)) or len(got) != len(args):
        raise AssertionError(f"check_vjp: f_vjp must return one gradient per argument, "
                             f"{len(args)} here, got {got!r:.80}")
    for i, (g, e) in enumerate(zip(got, expected)):
        try:
            _assert_allclose(g, e, rtol, atol, err_msg="check_vjp", names=(
                f"the hand vjp for args[{i}]", "rax's"), strict=True)
        except AssertionError as error:
            text = str(error)

            def contracted(*a):  # Re <f(*a), cotangent>: a loss whose gradient is the vjp
                pairs = zip(tree_leaves(f(*a)), tree_leaves(cotangent))
                return real(_sum((o * c).sum() for o, c in pairs))
            raise AssertionError(f"{text}. {_verdict(contracted, args)}") from None


def _check_jvp(f, f_jvp, args, tangents=None, rtol=1e-7, atol=1e-12):
    """Check a hand-written jvp, f_jvp(tangents, *args) -> the tangent of f's output, against
    rax's forward mode of f at args, with `tangents` (one per argument; default random).
    On a mismatch the AssertionError names the index and both values, and what rax's own
    graph of f says against central differences (see check_vjp)."""
    args = _checked_args("check_jvp", f, f_jvp, args)
    tangents = _cotangents_like(args) if tangents is None else tuple(tangents) if \
        isinstance(tangents, (tuple, list)) else (tangents,)
    expected = jvp(f, args, tangents)[1]
    got = f_jvp(tangents, *args)
    try:
        _assert_allclose(got, expected, rtol, atol, err_msg="check_jvp",
                         names=("the hand jvp", "rax's"), strict=True)
    except AssertionError as error:
        text = str(error)
        w = _cotangents_like(expected)

        def contracted(*a):
            return real(_sum((o * c).sum() for o, c in zip(tree_leaves(f(*a)), tree_leaves(w))))
        raise AssertionError(f"{text}. {_verdict(contracted, args)}") from None


def _checked_args(op, f, rule, args):
    _check_function(op, f)
    _check_function(op, rule)
    if isinstance(args, Tensor) or not isinstance(args, (tuple, list)):
        raise TypeError(f"{op}: args must be a tuple of f's arguments, such as (x,), got "
                        f"{type(args).__name__}")
    return tuple(args)


def _verdict(loss, args):
    """Whether rax's graph of loss(*args) agrees with central differences, op by op."""
    blame = _blame(loss, args, 1e-6, 1e-6, 1e-5, random.Random(0))
    if blame.startswith("Every op"):
        return ("Every op of f's graph agrees with central differences on its own, so rax's "
                "gradient is right: the hand-written rule is the one that differs")
    return f"rax's own graph of f is in doubt too: {blame}"


testing = _Namespace(
    "testing", shapes=_testing_shapes, broadcastable_shapes=_broadcastable_shapes,
    mutually_broadcastable_shapes=_mutually_broadcastable_shapes, floats=_testing_floats,
    tensors=_testing_tensors, trees=_testing_trees, cotangents=_cotangents,
    cotangents_like=_cotangents_like, assert_allclose=_assert_allclose,
    assert_equal=_assert_equal, check_vjp=_check_vjp, check_jvp=_check_jvp,
    SPECIAL_FLOATS=_SPECIAL_FLOATS)
__all__ += ["testing"]


# ============================================================================================
# 10. Programs: trace once, run many
#
# Calling a function builds its graph; a program keeps that graph so that it can be run again
# on new arguments without building tensors, printed, and compiled to straight-line Python.
# trace(f)(*args) runs f once on fresh argument leaves while _node records every node made.
# Walking back from f's result, each node is an argument (an input of the program), a node
# recorded during the call (an equation), or anything else, a tensor f reached by closure or
# made from data (a constant). Since vjp rules are tensor ops, the trace of
# value_and_grad(loss) holds the forward and the backward pass in one program.
#
# An equation says only its op, inputs, output and attrs; what it computes is the op's rule
# in _RULES, the record beside the op in chapters 2 and 4, which the eager op reads too. So
# eager, replay and compiled code compute every element with the same function, in the same
# order, and give the same floats. The compiled code is faster than eager rax and than most
# Python written by hand: it has no per-op overhead, fuses chains of elementwise ops (and
# the bias and activation after a matmul) into one comprehension, and reuses names.
# ============================================================================================

__all__ += ["trace", "jit", "Program", "Var", "Equation", "TraceError"]


class _Name(str):
    """A name in generated code, such as a kernel's argument that is one of rax's functions
    (the _sum_of of a sum): its repr is the bare name."""

    __slots__ = ()

    def __repr__(self):
        return str(self)


# Each thread records its own trace. While no thread traces, _node tests one global int.
_traces_running = 0  # the number of traces being recorded, in all threads
_this_thread = threading.local()  # .trace: the _Trace this thread records, if any
_traces_lock = threading.Lock()


def _current_trace():
    """The trace that this thread is recording, or None."""
    return getattr(_this_thread, "trace", None) if _traces_running else None


def _record(node):
    state = getattr(_this_thread, "trace", None)
    if state is not None:
        state.nodes.append(node)


class _Trace:
    """What trace() records: every node made (in order), the nodes made by vjp rules (the
    backward pass, for the listing), and the argument leaves; `outer` is the trace that was
    recording when this one began (a trace inside a traced function)."""

    __slots__ = ("nodes", "backward", "arguments", "outer", "immediate")

    def __init__(self, arguments, outer):
        self.nodes, self.backward, self.arguments, self.outer = [], set(), arguments, outer
        self.immediate = False  # see _trace


def _depends_on_arguments(t):
    """Whether t was computed from an argument of a trace being recorded: then its value is
    only that of this one call, and reading it would freeze it into the program."""
    arguments = set()
    state = _current_trace()
    while state is not None:
        arguments |= state.arguments
        state = state.outer
    seen, stack = set(), [t]
    while stack:
        u = stack.pop()
        if u in arguments:
            return True
        for x in u.inputs:
            if id(x) not in seen:
                seen.add(id(x))
                stack.append(x)
    return False


def _check_readable(t, what):
    """Raise TraceError if `what` (float(), .item(), ...) reads t while it is being traced."""
    if _traces_running and _current_trace() is not None and _depends_on_arguments(t):
        raise TraceError(
            f"{what} of a tensor computed from the arguments of a traced function (op "
            f"{t.op!r}, shape {t.shape}): its value would be frozen into the program. Use "
            f"rax.where to choose by value; a number that Python code needs (a size, a "
            f"flag) is no argument: pass it by closure or functools.partial")


def trace(f, offset=0, axis1=0, axis2=1):
    """A function that runs f once on the given arguments and returns its Program.

    (Given a tensor, nested lists or a number instead of a function, trace is numpy.trace:
    the sum of a diagonal, as the method x.trace(offset, axis1, axis2). No function is a
    tensor, so the two cannot be confused, and NumPy code translates name for name.)

    The program's inputs are the leaves of the arguments that are tensors or numbers (bools
    and other leaves are static: part of the program); tensors f reaches by closure, numbers
    written in f and random draws made in f are constants. f returns a tensor or a tree of
    them. While f runs, reading a value out of a tensor that depends on the arguments
    (float, int, bool, .item(), .tolist(), formatting) raises TraceError.

    >>> program = trace(lambda x: (x * x).sum())(Tensor([1.0, 2.0]))
    >>> print(program)
    { lambda a:f[2] .
        b:f[2] = mul a a
        c:f[] = sum[axis=(0,), keepdims=False] b
      in c }
    >>> program(Tensor([3.0, 4.0]))
    Tensor(25.0)
    """
    if isinstance(f, (Tensor, list, tuple, numbers.Number)) or _has_tolist(f):
        return _matrix_trace(f, offset, axis1, axis2)
    _check_function("trace", f)
    if any(type(v) is not int for v in (offset, axis1, axis2)) or (offset, axis1, axis2) != (
            0, 0, 1):  # a tensor or a number given after f
        raise TypeError("trace(f) takes the function alone and returns a function: call it "
                        "with the arguments, trace(f)(x)")

    def traced(*args, **kwargs):
        return _trace(f, args, kwargs)

    traced.__name__ = traced.__qualname__ = f"trace({getattr(f, '__name__', 'f')})"
    return traced


def _is_input(leaf):
    """Whether a leaf of the arguments is an input of a program: a float tensor, an array or
    a number. A bool is static, part of the program: a flag steers the code, and a mask
    decides the shape of what it picks (as JAX's static arguments, keyed by its values)."""
    if isinstance(leaf, Tensor):
        return leaf.dtype is not bool_
    if type(leaf) is bool:
        return False
    if _has_tolist(leaf):
        return not _is_bool_array(leaf)
    return isinstance(leaf, numbers.Number)


def _check_static(leaf, keys, op):
    """Refuse a static leaf that holds tensors (a model object with its weights as
    attributes): its tensors would be constants of the program, frozen at their values of
    the first call, and a later change of them would silently not count."""
    if isinstance(leaf, Tensor):  # a mask: static by its values, whatever made it
        return
    attributes = dict(getattr(leaf, "__dict__", None) or {})
    for name in itertools.chain.from_iterable(
            getattr(cls, "__slots__", ()) for cls in type(leaf).__mro__):
        if isinstance(name, str) and hasattr(leaf, name):
            attributes.setdefault(name, getattr(leaf, name))
    for name, value in attributes.items():
        values = list(value.values()) if isinstance(value, dict) else [value]
        if any(isinstance(v, Tensor) or _holds_tensor(v) for v in values):
            raise TypeError(
                f"{op}: {_argument_path(keys)} is a {type(leaf).__name__} object holding "
                f"tensors (in .{name}); as a static argument its tensors would be frozen into "
                f"the program, and a later change to them silently ignored. Pass the tensors "
                f"as arguments: a tree of them (params = {{'w': model.w, ...}}, and "
                f"f(params, x) using params), as JAX's functional models do")


def _static_key(leaf):
    """What of a static leaf decides the program: a mask (bool tensor or array) by its shape
    and values, anything else by itself (==, so it must be hashable)."""
    if _is_bool(leaf) and not isinstance(leaf, bool):
        data, shape, _ = _to_lists(leaf.data if isinstance(leaf, Tensor) else leaf, "jit")
        return ("mask", shape, tuple(_flat(data, len(shape))))
    return leaf


def _trace(f, args, kwargs, immediate=False, capture=False):
    """The Program of f on these arguments. immediate: the program is run at once on the
    tensors it was traced from (vmap's, scan's), so a constant may depend on an enclosing
    trace's arguments: it is read from its tensor, not frozen. capture: the float tensors f
    reaches by closure (not rax's own constants) are inputs too, after the arguments, and
    (program, those tensors) is returned (a loop's body, whose closures are its node's
    inputs, so that gradients reach them)."""
    global _traces_running
    items = _leaves_with_keys((args, kwargs), "trace", "args")
    inputs, leaves = [], []
    for keys, leaf in items:
        if not _is_input(leaf):
            _check_static(leaf, keys, "trace")
        else:
            data, shape, dtype = _to_lists(leaf, "trace") if not isinstance(leaf, Tensor) \
                else (leaf.data, leaf.shape, leaf.dtype)
            leaf = _node(None, None, data, shape, (), (), _ARGUMENT, dtype)
            inputs.append((keys, leaf))
        leaves.append(leaf)
    new_args, new_kwargs = _rebuild((args, kwargs), iter(leaves))
    state = _Trace({leaf for _, leaf in inputs}, _current_trace())
    state.immediate = immediate
    with _traces_lock:
        _traces_running += 1
    _this_thread.trace = state
    try:
        result = f(*new_args, **new_kwargs)
    except TypeError as error:
        _add_note(error, "while tracing: the numbers among the arguments are inputs of the "
                         "program, 0-d tensors inside f; pass a number that Python code needs "
                         "(a size, an index, lr) by closure or functools.partial. A list of "
                         "numbers is a tree of numbers: pass data as rax.Tensor(list)")
        raise
    finally:
        _this_thread.trace = state.outer
        with _traces_lock:
            _traces_running -= 1
        if state.outer is not None:  # the inner trace's nodes were made in the outer's call
            state.outer.nodes += state.nodes
            state.outer.backward |= state.backward
    with _collector_paused():
        program = Program(state, inputs, (args, kwargs), result)
    if not capture:
        return program
    captured = [t for t in program._sources.values()
                if not t.attrs.get("constant") and t.dtype is float64]
    inputs = inputs + [((0, "captured", i), t) for i, t in enumerate(captured)]
    return Program(state, inputs, (args, kwargs), result), captured


_ARGUMENT = MappingProxyType({"argument": True})


class Var:
    """A variable of a program: its name in the listing, its shape and its dtype (listed as
    f[...] for float64, b[...] for bool, c[...] for complex128). An input also has the path
    of its leaf in the
    arguments; a constant, its data."""

    __slots__ = ("name", "shape", "path", "data", "dtype")

    def __init__(self, name, shape, path=None, data=None, dtype=float64):
        self.name = name
        self.shape = shape
        self.path = path
        self.data = data
        self.dtype = dtype

    def __repr__(self):
        kind = {"bool": "b", "complex128": "c"}.get(self.dtype, "f")
        return f"{self.name}:{kind}[{','.join(map(str, self.shape))}]"


class Equation:
    """One step of a program: output = op(*inputs) with the static attrs. `forward` is the
    op's function (a primitive of your own is called through it); `backward` says that a
    vjp rule made it."""

    __slots__ = ("op", "inputs", "output", "attrs", "forward", "backward", "kind", "rule")

    def __init__(self, op, inputs, output, attrs, forward, backward):
        # (One assignment a line: W4's program makes 30,000 equations, and packing the
        # values into a tuple to unpack them costs a third of the time.)
        self.op = op
        self.inputs = inputs
        self.output = output
        self.attrs = attrs
        self.forward = forward
        self.backward = backward
        self.rule = False  # see _rule_of
        # The op, if it is rax's: a primitive of your own may have the name of one of them.
        self.kind = None if getattr(forward, "made_by_primitive", False) else op

    def __repr__(self):
        # A loop's body is a program, listed in full, nested (as a jaxpr lists scan's).
        attrs = ", ".join(f"{k}=" + (str(v).replace("\n", "\n        ")
                                     if isinstance(v, Program) else repr(v))
                          for k, v in self.attrs.items())
        operands = " ".join(_operand_text(v) for v in self.inputs)
        return f"{self.output!r} = {self.op}{f'[{attrs}]' if attrs else ''} {operands}"


def _operand_text(var):
    """A variable as the listing shows an operand: a 0-d constant by its value (2.0)."""
    if var.data is not None and not var.shape:
        return repr(var.data)
    return var.name


def _letters(i):
    """The i-th name of a listing, as jaxpr's: a, b, ..., z, ba, bb, ..."""
    name = ""
    while True:
        name = "abcdefghijklmnopqrstuvwxyz"[i % 26] + name
        i //= 26
        if i == 0:
            return name


class Program:
    """The graph of one call of a function, kept to run again, to print and to compile.

    Attributes: inputs (a Var for each tensor or number among the arguments' leaves), the
    constants (Vars with data), the equations in the order f ran them, and the outputs (a
    Var for each tensor in f's result). Made by rax.trace.

    ``program(*args, **kwargs)`` runs the equations on new arguments of the same structure
    and shapes and returns fresh leaves in the structure of f's result; ``source()`` is the
    program as the text of a Python function, ``compile()`` that function ready to call.
    """

    def __init__(self, state, inputs, arguments, result):
        if not isinstance(state, _Trace):
            raise TypeError("Program: a program is made by rax.trace(f)(*args), not "
                            "constructed directly")
        # The structures of the arguments and of the result, without their tensors.
        self._arguments = tree_map(lambda leaf: _INPUT if _is_input(leaf) else leaf, arguments)
        self._traced_leaves = tree_leaves(self._arguments)
        self._result = tree_map(lambda leaf: _INPUT if isinstance(leaf, Tensor) else leaf,
                                result)
        self._result_depth = _max((len(keys) for keys, _ in _leaves_with_keys(self._result)),
                                  default=0)
        self.inputs = tuple(Var(_letters(i), leaf.shape, _argument_path(keys), dtype=leaf.dtype)
                            for i, (keys, leaf) in enumerate(inputs))
        var_of = {leaf: var for (_, leaf), var in zip(inputs, self.inputs)}
        outputs = [leaf for _, leaf in _leaves_with_keys(result, "trace", "f's result")
                   if isinstance(leaf, Tensor)]
        recorded = set(state.nodes)
        made = self._reachable(outputs, var_of, recorded)
        self._sources = {}  # each constant's tensor
        constants, equations = self._equations(state, made, var_of)
        # A constant computed from a grad's argument (a closure of a jitted f inside grad):
        # jit then runs f itself, or the gradient through the constant would be lost.
        self._from_grad = _differentiated(
            [t for t in state.nodes if t.op is None] + [x for eq_t in made for x in eq_t.inputs
                                                        if x not in recorded])
        for t in outputs:
            if t not in var_of:  # an output that is a constant
                if not state.immediate:
                    _check_constant(t)
                var_of[t] = Var(_letters(len(var_of)), t.shape, data=t.data, dtype=t.dtype)
                constants.append(var_of[t])
                self._sources[var_of[t]] = t
        self.constants, self.equations = tuple(constants), tuple(equations)
        self.outputs = tuple(var_of[t] for t in outputs)
        self._compiled = {}

    def _equations(self, state, made, var_of):
        """The constants and the equations of the nodes `made`, in the order they ran. An
        equation that repeats an earlier one (op, inputs and attrs) is not kept: its output
        is the earlier one's. The data that an equation on constants alone had in the trace
        is kept, None where the trace's data is not what folding keeps (a broadcast, maybe
        large; your primitive's, not run early): _folded reads it rather than compute it
        again, and skips all the others (W4's first call -6%)."""
        constants, equations, merged, self._constant_data = [], [], {}, {}
        for t in state.nodes:  # (not sorted(made, ...): the nodes are in order)
            if t not in made:
                continue
            inputs, known = [], True
            for x in t.inputs:
                v = var_of.get(x)
                if v is None:  # a constant: not recorded, or a leaf made in f
                    if not state.immediate:
                        _check_constant(x)
                    v = var_of[x] = Var(_letters(len(var_of)), x.shape, None, x.data, x.dtype)
                    constants.append(v)
                    self._sources[v] = x  # (what a jitted call's node reads)
                elif known and v.data is None and v not in self._constant_data:
                    known = False
                inputs.append(v)
            inputs = tuple(inputs)
            attrs = t.attrs
            key = (t.op, t.forward, inputs, _attrs_key(attrs) if attrs else ())
            v = merged.get(key)
            if v is not None:  # the same op on the same inputs: the same value
                var_of[t] = v
                continue
            v = var_of[t] = merged[key] = Var(_letters(len(var_of)), t.shape, None, None,
                                              t.dtype)
            eq = Equation(t.op, inputs, v, dict(attrs) if attrs else {}, t.forward,
                          t in state.backward)
            equations.append(eq)
            if known:
                self._constant_data[v] = None if eq.kind in (None, "broadcast_to") else t.data
        return constants, equations

    @staticmethod
    def _reachable(outputs, var_of, recorded):
        """The recorded op nodes that the outputs need (dead ones are dropped)."""
        made, stack = set(), [t for t in outputs if t.op is not None and t in recorded]
        while stack:
            t = stack.pop()
            if t in made:
                continue
            made.add(t)
            for x in t.inputs:
                if x.op is not None and x not in made and x in recorded and x not in var_of:
                    stack.append(x)
        return made

    def __repr__(self):
        return (f"<rax.Program: {len(self.inputs)} inputs, {len(self.equations)} equations, "
                f"{len(self.outputs)} outputs>")

    def __str__(self):
        """The listing, as JAX's jaxpr: inputs and constants with their shapes, one equation
        a line, the backward pass after a marker (and what comes after it after another),
        the outputs in f's structure."""
        constants = [v for v in self.constants if v.shape]
        head = " ".join(map(repr, self.inputs))
        if constants:
            head += " ; " + " ".join(map(repr, constants))
        lines = [f"{{ lambda {head} ."]
        backward = False
        for eq in self.equations:
            if eq.backward != backward:
                backward = eq.backward
                # what follows the backward pass (an optimizer's update) is no forward pass
                lines.append("    -- backward --" if backward else "    -- after backward --")
            lines.append(f"    {eq!r}")
        names = iter([_Name(_operand_text(v)) for v in self.outputs])
        result = _rebuild(self._result, (next(names) if leaf is _INPUT else leaf
                                         for leaf in tree_leaves(self._result)))
        lines.append(f"  in {result!r} }}")
        return "\n".join(lines)

    def _input_tensors(self, op, args, kwargs, as_array=None, as_dtype=None):
        """The inputs from new arguments, as tensors (or arrays, made by as_array, or
        as_dtype for complex inputs), checked against the traced ones."""
        for name, traced, given in (("args", self._arguments[0], args),
                                    ("kwargs", self._arguments[1], kwargs)):
            difference = _structure_difference(traced, given, name,
                                               ("the traced arguments", "these"))
            if difference:
                raise ValueError(f"{op}: the arguments do not have the structure of the "
                                 f"traced ones: {difference}")
        tensors, inputs = [], iter(self.inputs)
        for (keys, leaf), was in zip(_leaves_with_keys((args, kwargs), op, "args"),
                                     self._traced_leaves):
            if was is not _INPUT:
                if _is_input(leaf) or not _same_static(was, leaf):
                    raise ValueError(f"{op}: {_argument_path(keys)} is {leaf!r:.60}, but the "
                                     f"program was traced with {was!r:.60} there, a static "
                                     f"argument")
                continue
            if not _is_input(leaf):
                raise ValueError(f"{op}: {_argument_path(keys)} is {leaf!r:.60}, but the "
                                 f"program takes a tensor or a number there")
            var = next(inputs)
            _check_input_dtype(op, keys, leaf, var)
            if as_array is not None:  # (reshaped: the data of a (0, 3) tensor is [])
                to_array = as_array if var.dtype is not complex128 else functools.partial(
                    as_dtype, dtype="complex128")  # (a real leaf for a complex input too)
                try:
                    t = to_array(leaf.data).reshape(leaf.shape) if isinstance(leaf, Tensor) \
                        else to_array(leaf)
                except OverflowError:
                    raise ValueError(f"{op}: {_argument_path(keys)} = {_text(leaf):.60} is "
                                     f"too large for a float") from None
            else:
                t = leaf if isinstance(leaf, Tensor) else _leaf(*_to_lists(leaf, op))
                if t.dtype is not var.dtype:  # a real leaf for a complex input: promoted
                    t = _leaf(astype_lists(t.data, t.ndim, "complex128"), t.shape, complex128)
            if tuple(t.shape) != var.shape:
                raise ValueError(f"{op}: {_argument_path(keys)} has shape {tuple(t.shape)}, "
                                 f"but the program was traced with shape {var.shape}")
            tensors.append(t)
        return tensors

    def _in_structure(self, outputs):
        """The outputs (tensors), in the structure of f's result."""
        outputs = iter(outputs)
        if self._result_depth < 100:  # (W3a's step: 14 -> 3 us; a deep tree is walked below)
            return _build_like(self._result, outputs)
        return _rebuild(self._result, (next(outputs) if leaf is _INPUT else leaf
                                       for leaf in tree_leaves(self._result)))

    def _results(self, data):
        """Fresh leaves of the outputs' data, in the structure of f's result."""
        return self._in_structure([_leaf(d, v.shape, v.dtype)
                                   for d, v in zip(data, self.outputs)])

    def _with_ops(self, inputs, captured=None):
        """The equations run as ops, each by its op's function (forward(*inputs, **attrs)
        makes the node again), for a call while tracing or inside grad: the graph, and so
        the gradients, go through the program. captured gives tensors for some constants
        (a jitted call's node differentiates through what f closed over)."""
        values = dict(zip(self.inputs, inputs))
        values.update((v, _node(None, None, v.data, v.shape, (), (), _CONSTANT, v.dtype))
                      for v in self.constants)
        values.update(captured or {})
        for eq in self.equations:
            values[eq.output] = eq.forward(*[values[v] for v in eq.inputs], **eq.attrs)
        return self._in_structure([values[v] for v in self.outputs])

    def __call__(self, /, *args, **kwargs):
        """Run the equations on new arguments, building no tensors, with each op's rule.
        Called while tracing, or with a tensor computed from an argument of grad (or vjp,
        jvp), it runs them as ops instead, so that gradients flow through it."""
        inputs = self._input_tensors("Program", args, kwargs)
        if _current_trace() is not None or _differentiated(inputs):
            return self._with_ops(inputs)
        values = {var: t.data for var, t in zip(self.inputs, inputs)}
        values.update((v, v.data) for v in self.constants)
        for eq in self.equations:
            values[eq.output] = _run_equation(eq, [values[v] for v in eq.inputs])
        return self._results([values[v] for v in self.outputs])

    def source(self, backend="python"):
        """The program as the text of one function: straight-line Python over nested lists
        (see compile), or code over the arrays of "numpy", "jax" or "torch" (see 10b)."""
        _check_backend(backend)
        return _python_source(self)[0] if backend == "python" else _array_source(self, backend)

    def compile(self, backend="python"):
        """The program as a function, called as the program is, that runs its source.

        The source uses the fast C functions (math.exp, /); if they raise somewhere (1/0,
        exp(1000)), the call is made again with the IEEE-safe twins (appendix B), as eager
        rax redoes an op, so the answers are the same.
        """
        _check_backend(backend)
        if backend != "python":
            return self._compile_array(backend)
        if False not in self._compiled:
            self._compile(False)

        def compiled(*args, **kwargs):
            inputs = self._input_tensors("compiled program", args, kwargs)
            if _current_trace() is not None or _differentiated(inputs):
                return self._with_ops(inputs)  # as the program's call does
            return self._run_compiled(inputs)

        return compiled

    def _run_compiled(self, inputs, node=None):
        """The compiled function on checked input tensors: fresh leaves in f's structure, or
        with node = (name, make_rules), nodes of that op whose inputs are `inputs` and
        whose vjp rules make_rules(k) gives (a jitted call: see _JitNode)."""
        data = [t.data for t in inputs]
        try:
            outputs = self._compiled[False](*data)
        except (ArithmeticError, ValueError):
            outputs = (self._compiled.get(True) or self._compile(True))(*data)
        if node is None:
            return self._results(outputs)
        inputs = tuple(inputs) + node.captured
        return self._in_structure([
            _node(node.name, node.forward(k), d, v.shape, inputs, node.rules(k), _NO_ATTRS,
                  v.dtype) for k, (d, v) in enumerate(zip(outputs, self.outputs))])

    def _compile_array(self, backend):
        """The program's code in a library as a function: that library's arrays (or
        tensors, numbers, nested lists) in, in the structure of the arguments, and its
        float64 arrays out, in the structure of f's result."""
        text = _array_source(self, backend)
        filename = f"<rax program {id(self):x} {backend}>"
        namespace = {"__name__": f"rax_program_{backend}"}
        try:
            exec(compile(text, filename, "exec"), namespace)  # noqa: S102: rax's own text
        except ImportError as error:
            raise ImportError(f"Program.compile({backend!r}) needs {backend}, which is not "
                              f"installed here: {_BACKENDS[backend].install}") from error
        _keep_source(namespace["program"], filename, text)
        function, as_array = namespace["program"], namespace["as_array"]
        convert = [as_array if v.dtype is float64 else functools.partial(
            namespace["as_dtype"], dtype=str(v.dtype)) for v in self.outputs]
        if backend == "jax":  # compiled by XLA once per shape: op by op, JAX is slow
            function = namespace["jax"].jit(function)

        # A speed device: arguments whose leaves are of the types, shapes and dtypes of the
        # last call that was checked, in the traced structure, need no check again and no
        # conversion (as_array gave them back as they were). W3a's fixed cost a call
        # 40 -> 6 us, numpy backend; W1/16's through jit 25 -> 3 us.
        checked = [None]  # (type, shape, dtype) of each leaf of the last checked call

        flat = all(leaf is _INPUT for leaf in self._arguments[0])  # arrays alone, (x, y)

        def compiled(*args, **kwargs):
            leaves = []
            if flat and not kwargs and len(args) == len(self._arguments[0]):
                leaves = list(args)
            elif kwargs or not _walk_as(self._arguments[0], args, leaves):
                leaves = None
            if leaves is not None and checked[0] is not None and checked[0] == [
                    (type(x), getattr(x, "shape", None), getattr(x, "dtype", None))
                    for x in leaves]:
                inputs = leaves
            else:
                inputs = self._input_tensors(f"compiled {backend} program", args, kwargs,
                                             as_array, namespace["as_dtype"])
                checked[0] = None if leaves is None or any(
                    x is not y for x, y in zip(leaves, inputs)) else [
                    (type(x), x.shape, x.dtype) for x in leaves]
            return self._in_structure([to(out) for to, out in zip(convert, function(*inputs))])

        compiled.function = function  # the generated function itself, on flat arrays
        return compiled

    def _compile(self, safe):
        text, bound = _python_source(self, safe)
        filename = f"<rax program {id(self):x}{' safe' if safe else ''}>"
        namespace = {"__name__": "rax_program", **bound}
        exec(compile(text, filename, "exec"), namespace)  # noqa: S102: rax's own text
        _keep_source(namespace["program"], filename, text)
        self._compiled[safe] = namespace["program"]
        return namespace["program"]


def _build_like(traced, outputs):
    """The tree `traced` (a program's result with _INPUT at the outputs) with the next of
    the iterator outputs at each _INPUT: _rebuild's work, by recursion, for a shallow tree."""
    if traced is _INPUT:
        return next(outputs)
    if isinstance(traced, dict):
        return {key: _build_like(value, outputs) for key, value in traced.items()}
    if isinstance(traced, (list, tuple)):
        values = [_build_like(value, outputs) for value in traced]
        return type(traced)(*values) if hasattr(traced, "_fields") else type(traced)(values)
    return traced  # a leaf of f's result that is no tensor (None, a number)


def _walk_as(traced, given, leaves):
    """Whether the tree `given` has the structure of `traced` (a program's arguments with
    _INPUT at the inputs, no static leaves) exactly, same container types included; its
    leaves at the inputs are appended to leaves, in order (traced's dicts have sorted keys)."""
    if traced is _INPUT:
        leaves.append(given)
        return True
    if type(given) is not type(traced) or not isinstance(traced, (list, tuple, dict)) or len(
            given) != len(traced):
        return False
    if isinstance(traced, dict):
        return all(key in given and _walk_as(value, given[key], leaves)
                   for key, value in traced.items())
    return all(_walk_as(t, g, leaves) for t, g in zip(traced, given))


def _keep_source(function, filename, text):
    """Keep the generated text in linecache, so that a traceback into it shows its lines,
    for as long as the function lives: it is forgotten when the function is collected."""
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    weakref.finalize(function, linecache.cache.pop, filename, None)


class _Slot:
    """The mark of a program's input or output in its structures; its type reads well in
    a message (args[0] is a tensor or number in the traced arguments and a list in these)."""

    __slots__ = ()

    def __repr__(self):
        return "<input>"


_Slot.__name__ = "tensor or number"
_INPUT = _Slot()


def _argument_path(keys):
    """Where a leaf is in trace's (args, kwargs): args[0]['w'] or kwargs['lr']."""
    return _path("args" if keys[0] == 0 else "kwargs", keys[1:])


def _same_static(was, leaf):
    if was is leaf:
        return True
    try:
        was, leaf = _static_key(was), _static_key(leaf)
        return type(was) is type(leaf) and bool(was == leaf)
    except Exception:  # noqa: BLE001: an == that cannot answer is a no
        return False


def _attrs_key(attrs):
    """attrs as a key that two equations share only if their attrs are the same: numbers,
    strings, slices and tuples of them by value (repr keeps -0.0 apart from 0.0), anything
    else (an array given to a primitive of your own, say) by identity."""
    if not attrs:  # most ops' (a speed device: W4's trace -15%)
        return ()
    if len(attrs) == 1:  # a broadcast's shape, most often (W4's first call -1%)
        [(name, value)] = attrs.items()
        return ((name, _attr_key(value)),)
    return tuple([(name, _attr_key(value)) for name, value in sorted(attrs.items())])


def _attr_key(value):
    if isinstance(value, tuple):  # a shape or axes, most often: itself
        for v in value:
            if type(v) is not int:
                return tuple(map(_attr_key, value))
        return value
    if value is None or isinstance(value, (bool, int, float, str, slice)):
        return repr(value)
    return ("object", id(value))


def _check_constant(t):
    """A constant of a program must not depend on an argument of an enclosing trace."""
    _check_readable(t, "a constant of a program (a tensor reached by closure)")


def _check_backend(backend, op="Program"):
    if not isinstance(backend, str) or backend != "python" and backend not in _BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; there are 'python', "
                         f"'numpy', 'jax' and 'torch'")


def _run_equation(eq, data):
    """The output data of one equation, by its op's rule (_RULES), as eager rax computes."""
    rule = _rule_of(eq)
    if rule is None:  # a primitive of your own: its forward, on leaves
        out = eq.forward(*[_leaf(d, v.shape, v.dtype) for d, v in zip(data, eq.inputs)],
                         **eq.attrs)
        return out.data
    if isinstance(rule, _Elementwise):
        if eq.op == "pow_scalar":
            data = data + [_full_lists(eq.output.shape, eq.attrs["exponent"])]
        return rule(data, len(eq.output.shape))
    if rule.name is None:
        return data[0]
    args = [globals()[a] if isinstance(a, _Name) else a for a in _kernel_args(eq, rule)]
    kernel = globals()[rule.name]
    return kernel(data, *args) if rule.listed else kernel(*data, *args)


def _rule_of(eq):
    """The _Elementwise or _Kernel of an equation; None for a primitive of your own. Kept
    on the equation once found (the code writer asks about 4 times an equation: W4's first
    call, 30,000 equations, -6% of its instructions)."""
    if eq.rule is not False:  # (False: not looked up yet)
        return eq.rule
    if eq.kind is None:  # (made by primitive)
        rule = None
    else:
        rule = _power_rule(eq.attrs["exponent"]) if eq.op == "pow_scalar" else _RULES[eq.op]
        if getattr(rule, "on_complex", None):
            for v in eq.inputs:
                if v.dtype is complex128:
                    rule = rule.on_complex  # the complex twin (see the dtypes in chapter 1)
                    break
    eq.rule = rule
    return rule


def _kernel_args(eq, rule):
    return rule.args(tuple(v.shape for v in eq.inputs), eq.attrs, eq.output.shape)


def jit(f, backend="python", cache_size=64):
    """f, compiled: traced and compiled on the first call with each signature (the
    structure of the arguments, the shapes of their tensors, their static leaves), then run
    as compiled code. Results equal f's (==, nan equal to nan) and are nodes of one op,
    jit(f), whose inputs are the call's tensors: a later backward goes through the call, by
    the compiled backward program (see _JitNode). With backend "numpy", "jax" or "torch", the
    code is that library's (see Program.compile), and its arrays come out.

    Called while a function is being traced, or with a tensor computed from an argument of
    grad, vjp or jvp, it runs f itself, so that the graph and gradients are those of f.

    The compiled programs are kept for the last `cache_size` signatures used (least recently
    used goes first; None keeps all). ``jitted.cache_info()`` and ``jitted.cache_clear()``
    are those of functools.lru_cache; after _RETRACE_WARNING traces, a warning names the
    argument whose shape or static value keeps changing (each change is a new trace).

    >>> step = jit(lambda w, x: (w * x).sum())
    >>> step(Tensor([1.0, 2.0]), Tensor([3.0, 4.0]))
    Tensor(11.0, op='jit(<lambda>)')
    >>> step.cache_info()
    CacheInfo(hits=0, misses=1, maxsize=64, currsize=1)
    """
    _check_function("jit", f)
    _check_backend(backend, "jit")
    if cache_size is not None and (isinstance(cache_size, bool) or not isinstance(
            cache_size, numbers.Integral) or cache_size < 1):
        raise ValueError(f"jit: cache_size must be an int >= 1 or None, got {cache_size!r}")
    cache = _JitCache(cache_size, arrays=backend != "python")

    def jitted(*args, **kwargs):
        fast = not kwargs and not _traces_running and not getattr(
            _this_thread, "differentiated", None)
        shortcut = cache.shortcut(args) if fast else None
        if shortcut is not None:
            (program, code, node), leaves = shortcut
            return code(*args) if backend != "python" else program._run_compiled(leaves, node)
        key, inputs = _signature((args, kwargs))
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        if _current_trace() is not None or _differentiated(tensors):
            return f(*args, **kwargs)
        entry = cache.get(key)
        if entry is None:
            with _collector_paused():
                program = _trace(f, args, kwargs)
                code = None if program._from_grad else program.compile(backend)
            if code is None:  # f closes over a tensor being differentiated
                return f(*args, **kwargs)
            entry = program, code, _JitNode(jitted.__name__, program)
            _count_trace(f, cache, (args, kwargs))
            cache.add(key, entry)
        cache.remember(args, kwargs, key)
        if backend != "python":
            return entry[1](*args, **kwargs)
        # The key holds the structure, the shapes and the static leaves: no check is left.
        return entry[0]._run_compiled([t if isinstance(t, Tensor) else
                                       _leaf(*_to_lists(t, "jit")) for t in inputs], entry[2])

    jitted.cache_info, jitted.cache_clear = cache.info, cache.entries.clear
    jitted.__name__ = jitted.__qualname__ = f"jit({getattr(f, '__name__', 'f')})"
    return jitted


class _JitNode:
    """What makes the results of a jitted call nodes of one op, named after f (jit(loss)),
    whose inputs are the call's tensors: so loss = jit(f)(w); loss.backward()[w] is the
    gradient, as for f itself. The vjp rule of output k is the backward of the program,
    itself traced and compiled once per shape (a jit of vjp), computed once per cotangent for
    all inputs; under grad of grad it runs as ops, so higher derivatives flow too. A node's
    forward replays the program as ops (what check_grads' blame calls)."""

    def __init__(self, name, program):
        self.name, self.program = name, program
        self._rules, self._forwards, self._last = {}, {}, (None, None)
        # Tensors that f reached by closure (or made) are inputs of the node too, so that
        # gradients reach them as they would without jit; rax's own constants are not.
        self.captured_vars = [v for v, t in program._sources.items()
                              if not t.attrs.get("constant") and t.dtype is float64]
        self.captured = tuple(program._sources[v] for v in self.captured_vars)
        n = len(program.inputs)

        def flat(*tensors):  # the program as a function of its input tensors, as ops
            captured = dict(zip(self.captured_vars, tensors[n:]))
            return tuple(tree_leaves(program._with_ops(list(tensors[:n]), captured)))

        self.flat, self._backward = flat, {}

    def backward(self, inputs, k, g):
        """Every input's gradient for the cotangent g of output k, by a jit of vjp."""
        if k not in self._backward:
            def pull(inputs, g):
                outputs, pullback = vjp(self.flat, *inputs)
                return pullback(tuple(g if j == k else zeros_like(o)
                                      for j, o in enumerate(outputs)))
            self._backward[k] = jit(pull)
        return self._backward[k](inputs, g)

    def forward(self, k):
        """The function that makes output k again from the inputs, as ops (made once)."""
        if k not in self._forwards:
            self._forwards[k] = lambda *inputs: self.flat(*inputs)[k]
        return self._forwards[k]

    def rules(self, k):
        """The vjp rules of output k, one per input (None for a bool output)."""
        if k not in self._rules:
            n = len(self.program.inputs) + len(self.captured)
            self._rules[k] = (None,) * n if self.program.outputs[k].dtype is bool_ else tuple(
                self._rule(k, i) for i in range(n))
        return self._rules[k]

    def _rule(self, k, i):
        def rule(g, out, *inputs):
            key, grads = self._last  # the engine asks for each input in turn, with one g
            if key is None or key[0] is not g or key[1] is not out:
                grads = self.backward(inputs, k, g)
                self._last = ((g, out), grads)
            return grads[i]
        return rule


_CacheInfo = collections.namedtuple("CacheInfo", "hits misses maxsize currsize")


class _JitCache:
    """A jitted function's programs by signature, least recently used first, at most `size`
    of them (None: no bound), with functools.lru_cache's counts and the retrace warning's
    memory (see _count_trace).

    Its shortcut is a speed device: when the arguments are float tensors alone, or lists,
    tuples and dicts (str keys) of them, their shapes and that structure decide the
    signature, so when nothing is being traced or differentiated, the signature found for
    them before is used as it is, without the walk that checks every leaf (a 2x2 matmul's
    call 15.3 -> 3.6 us; W3a's step, whose params are a list of dicts, 96 -> 30 us). With
    arrays=True (a backend's jit) float arrays count too, by their type and shape (W1/16,
    numpy: 17 -> 4 us)."""

    def __init__(self, size, arrays=False):
        self.size, self.entries, self.shortcuts, self.arrays = size, {}, {}, arrays
        self.hits = self.misses = 0
        self.last, self.warned = None, False

    def get(self, key):
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.hits += 1
            self.entries[key] = entry  # now the most recently used
        return entry

    def add(self, key, entry):
        if self.size is not None and len(self.entries) >= self.size:
            del self.entries[next(iter(self.entries))]  # the least recently used
        self.entries[key] = entry

    def shortcut(self, args):
        """(the entry, the input leaves in the program's order) of a call like one before."""
        leaves = []
        key = self.shortcuts.get(self.shapes(args, leaves))
        entry = None if key is None else self.get(key)  # (None: evicted since)
        return None if entry is None else (entry, leaves)

    def remember(self, args, kwargs, key):
        shapes = self.shapes(args, [])
        if not kwargs and shapes is not None:
            self.shortcuts[shapes] = key

    def shapes(self, args, leaves):
        """shape() of each argument (a float tensor's written out: the common case), or
        None if one has none."""
        shapes = []
        for a in args:
            if type(a) is Tensor and a.dtype is float64:
                leaves.append(a)
                shapes.append(a.shape)
            else:
                shape = self.shape(a, leaves, 1)
                if shape is None:
                    return None
                shapes.append(shape)
        return tuple(shapes)

    def shape(self, a, leaves, depth=0):
        """What of a float tensor (or array), or of a list, tuple or dict (str keys) of
        them, decides the signature, the tensors added to leaves in the order of the
        program's inputs (dict keys sorted); None for anything else."""
        kind = type(a)
        if kind is Tensor:
            leaves.append(a)
            return a.shape if a.dtype is float64 else None
        if (kind is list or kind is tuple) and depth < 10:
            shapes = tuple([self.shape(x, leaves, depth + 1) for x in a])
            return None if None in shapes else (kind, shapes)
        if kind is dict and depth < 10:
            if any(type(k) is not str for k in a):
                return None
            keys = tuple(sorted(a))  # (the order of the leaves, as in tree_leaves)
            shapes = tuple([self.shape(a[k], leaves, depth + 1) for k in keys])
            return None if None in shapes else (keys, shapes)
        if self.arrays and getattr(getattr(a, "dtype", None), "kind", None) == "f":
            leaves.append(a)
            return kind, a.shape
        return None

    def info(self):
        return _CacheInfo(self.hits, self.misses, self.size, len(self.entries))
_RETRACE_WARNING = 20  # traces of one jitted function before it warns, once


class _collector_paused:
    """Python's cycle collector paused, then restored as it was: a speed device for the
    one-off work of jit on a new signature, tracing f (a pure function, in rax's style),
    building its program and writing and compiling its code. That work makes tens of
    thousands of objects and no reference cycles, and the collector would walk them, and
    everything else alive, again and again, in vain: paused, W4's first call under jit
    took 0.45 s instead of 0.60 s (with the rest of that work as it was then), and in the
    benchmark's process, which holds every workload's data, 0.29 s instead of 0.36 s when
    f's trace ran with the collector on. (Building a program, as trace() and the loops do,
    pauses it too.)"""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *error):
        if self.was:
            gc.enable()


def _count_trace(f, counts, arguments):
    """Count a trace of a jitted f (in its _JitCache); at the _RETRACE_WARNING-th, warn once,
    naming the arguments whose shapes or static values differ from the previous trace's."""
    counts.misses += 1
    now = [(_argument_path(keys), _static_key(leaf) if not _is_input(leaf) else (
        leaf.shape if hasattr(leaf, "shape") else ())) for keys, leaf in
        _leaves_with_keys(arguments, "jit", "args")]
    last, counts.last = counts.last, now
    if counts.misses < _RETRACE_WARNING or counts.warned or last is None:
        return
    counts.warned = True
    changed = [path for (path, a), (other, b) in zip(now, last) if path != other or a != b]
    what = ", ".join(changed[:3]) if changed and len(now) == len(last) else \
        "the structure of the arguments"
    warnings.warn(f"jit({getattr(f, '__name__', 'f')}) has traced and compiled "
                  f"{counts.misses} times: {what} changed since the last trace (a new "
                  f"shape or static value is a new program). Keep shapes fixed (pad a last "
                  f"batch), or pass a changing number as a tensor", stacklevel=3)


def _differentiated(tensors):
    """Whether any of the tensors was computed from an argument of a grad, vjp or jvp that
    is running in this thread: then a program or jitted function runs as ops, so that the
    gradient goes through it. Tensors merely made by ops (one_hot labels, x / 255), or from
    the arguments of a grad that is over, still run compiled."""
    running = getattr(_this_thread, "differentiated", None)
    if not running:
        return False
    arguments = frozenset().union(*running)
    seen, stack = set(), list(tensors)
    while stack:
        t = stack.pop()
        if t in arguments:
            return True
        for x in t.inputs:
            if id(x) not in seen:
                seen.add(id(x))
                stack.append(x)
    return False


def _check_input_dtype(op, keys, leaf, var):
    """A complex leaf where the program was traced with a real input is a TypeError (its
    equations compute with floats); a real leaf for a complex input is promoted."""
    dtype = getattr(leaf, "dtype", None)  # rax's, NumPy's and JAX's kinds, torch's flag
    complex_leaf = getattr(dtype, "kind", "") == "c" or getattr(dtype, "is_complex", False) \
        or (dtype is None and isinstance(leaf, numbers.Complex)
            and not isinstance(leaf, numbers.Real))
    if complex_leaf and var.dtype is not complex128:
        raise TypeError(f"{op}: {_argument_path(keys)} holds complex numbers, but the program "
                        f"was traced with {var.dtype} there: trace it with complex input")


def _signature(arguments):
    """What of the arguments decides the program: their structure, each input's shape, and
    each static leaf itself (by ==, so it must be hashable, as JAX's static arguments); and
    the leaves that are inputs."""
    def shape_or_static(leaf):
        if _is_bool(leaf):
            return _Name("static")
        if isinstance(leaf, Tensor) or hasattr(leaf, "shape"):  # a tensor, an array
            kind = "c" if getattr(leaf, "dtype", None) == complex128 or \
                _is_complex_array(leaf) else "f"
            return _Name(f"{kind}{list(leaf.shape)}")
        if _is_input(leaf):
            data, shape, dtype = _to_lists(leaf, "jit")
            return _Name(f"{'c' if dtype is complex128 else 'f'}{list(shape)}")
        return _Name("static")
    statics, inputs = [], []
    for keys, leaf in _leaves_with_keys(arguments, "jit", "args"):
        if _is_input(leaf):
            inputs.append(leaf)
        else:
            _check_static(leaf, keys, "jit")
            key = _static_key(leaf)
            try:
                hash(key)
            except TypeError:
                raise TypeError(f"jit: {_argument_path(keys)} = {leaf!r:.60} is a static "
                                f"argument (not a tensor or number), so it must be hashable"
                                ) from None
            statics.append((type(leaf), key))
    return (repr(tree_map(shape_or_static, arguments)), tuple(statics)), inputs


# ---- 10a. Compiling a program to Python -----------------------------------------------------
#
# One statement per materialised value. An elementwise equation used once, by another
# elementwise equation, is not materialised but written into its user's expression, so a
# chain of them becomes one comprehension over the rows; a broadcast_to that only elementwise
# equations use is not materialised either: its source is zipped in at the axes where it has
# the side, and read once where it is repeated. A 2-D matmul feeds its dot products into
# such a comprehension (the bias add and relu after it). Names of values no longer needed
# are reused: a frame of 30,000 locals made W4's code twice as slow.

# The parentheses one expression may nest (an operator counts 2 and each parenthesis of its
# rule one more: the safe twin's call and the operand's own); Python's parser stops at 200.
_MAX_DEPTH = 120
_INDEX_LETTERS = "ijklmnopqrstuvwxyz"


def _all_elementwise(users):
    """Whether a value has users, all elementwise equations (an output's user is None)."""
    return bool(users) and all(u is not None and isinstance(_rule_of(u), _Elementwise)
                               for u in users)


def _python_source(program, safe=False):
    """(the source text, the names it needs bound: its constants and your primitives)."""
    writer = _PythonWriter(program, safe)
    return writer.text(), writer.bound


class _PythonWriter:
    """Writes the Python source of one program (see above); safe=True uses the IEEE-safe
    twins of every elementwise function."""

    def __init__(self, program, safe):
        self.program, self.safe = program, safe
        self.alias = _folded(program)  # a value -> the value it is (a constant, an input)
        self.uses = {}  # var -> the equations and outputs that read it
        for eq in program.equations:
            if eq.output not in self.alias:
                for v in eq.inputs:
                    users = self.uses.get(v)
                    if users is None:
                        self.uses[v] = [eq]
                    else:
                        users.append(eq)
        for v in program.outputs:
            self.uses.setdefault(v, []).append(None)
        self.producer = {eq.output: eq for eq in program.equations}
        self.inlined, self.virtual, depth = set(), set(), {}
        self.swapped = set()  # 2-D transposes that only matmuls read: never materialised
        self.literals = {}  # var -> its literal, for a value the same at every element
        outputs, no_users = set(program.outputs), ()
        for eq in program.equations:
            if eq.output in self.alias:
                continue
            rule, users = _rule_of(eq), self.uses.get(eq.output, no_users)
            if isinstance(rule, _Kernel) and rule.name is None:
                self.alias[eq.output] = eq.inputs[0]
            elif eq.kind == "broadcast_to" and eq.output not in outputs and _all_elementwise(
                    users):
                self.virtual.add(eq.output)
            elif (eq.kind == "transpose" and len(eq.output.shape) == 2 and users
                  and eq.output not in outputs
                  and all(u is not None and self._fusable_matmul(u) for u in users)):
                self.swapped.add(eq.output)
            elif isinstance(rule, _Elementwise) or self._fusable_matmul(eq):
                if (len(users) != 1 or eq.output in outputs or users[0] is None
                        or not isinstance(_rule_of(users[0]), _Elementwise)):
                    continue  # materialised
                d = 2 + _template_facts(rule.expr)[2] if isinstance(rule, _Elementwise) else 3
                d += _max([depth.get(v, 0) for v in eq.inputs])
                if d < _MAX_DEPTH:
                    self.inlined.add(eq.output)
                    depth[eq.output] = d
        self._one_matmul_a_group()
        self.names, self.free, self.count = {}, [], 0
        self.taken = set()  # every name the function uses: no two values may share one
        self.underscores = {}  # base name -> the underscores its last fresh name had
        self.helpers = {}  # names imported from rax -> their objects
        self.bound = {}  # names bound when compiled: constants, your primitives
        self.lines = []

    def _one_matmul_a_group(self):
        """A group holds one matmul at most: the others are materialised."""
        if not any(self.producer[v].kind == "matmul" for v in self.inlined):
            return
        for eq in reversed(self.program.equations):
            if eq.output in self.inlined:
                continue
            found, stack = False, list(eq.inputs)
            while stack:
                v = self.resolve(stack.pop())
                if v not in self.inlined:
                    continue
                producer = self.producer[v]
                if producer.kind == "matmul":
                    if found:
                        self.inlined.discard(v)
                    found = True
                else:
                    stack += producer.inputs

    def _fusable_matmul(self, eq):
        """A 2-D matmul with an inner side, written as a comprehension of dot products."""
        return eq.kind == "matmul" and len(eq.output.shape) == 2 and eq.inputs[0].shape[1] > 0

    # -- names --
    def name(self, var):
        """The Python text of a value: its local name, a literal or a constant's name."""
        var = self.resolve(var)
        if var in self.names:
            return self.names[var]
        if var.data is not None:
            if not var.shape:
                return _literal(var.data)
            name = self.names[var] = self.fresh(f"c{len(self.bound)}")
            self.bound[name] = var.data
            return name
        raise AssertionError(f"no name for {var!r}")

    def resolve(self, var):
        while var in self.alias:
            var = self.alias[var]
        return var

    def new_name(self, var):
        """A name for a new value: one freed by a value no longer needed, else a new one."""
        if self.free:
            name = self.free.pop()
        else:
            name, self.count = self.fresh(f"t{self.count}"), self.count + 1
        self.names[var] = name
        return name

    def fresh(self, name):
        """name, or name with _ added until no argument or other value has it. Names are
        only ever added, so the search for a base name goes on from where it last stopped
        (a speed device: W4's source has thousands of t0_i, t0_i_, ...; -35% of source())."""
        base, underscores = name, self.underscores.get(name, 0)
        name = base + "_" * underscores
        while name in self.taken:
            name += "_"
            underscores += 1
        self.underscores[base] = underscores
        self.taken.add(name)
        return name

    # -- the function --
    def text(self):
        program = self.program
        params = []
        for var in program.inputs:
            name = _identifier(var.path, self.taken)
            self.taken.add(name)
            self.names[var] = name
            params.append(name)
        last_use = {}
        steps = [eq for eq in program.equations
                 if eq.output not in self.inlined and eq.output not in self.virtual
                 and eq.output not in self.alias and eq.output not in self.swapped]
        reads = [set(self.leaves_of(eq)) for eq in steps]
        for i, leaves in enumerate(reads):
            for v in leaves:
                last_use[v] = i
        outputs = {self.resolve(v) for v in program.outputs}
        for i, eq in enumerate(steps):
            before, statement = self.statement(eq)
            self.lines += [f"    {line}" for line in before]
            for v in reads[i]:
                if last_use.get(v) == i and v not in outputs and v in self.names \
                        and re.fullmatch(r"t\d+", self.names[v]):
                    self.free.append(self.names[v])
            self.lines.append(f"    {self.new_name(eq.output)} = {statement}")
        outputs = ", ".join(self.name(v) for v in program.outputs)
        self.lines.append(f"    return ({outputs}{',' if len(program.outputs) == 1 else ''})")
        head = [f"def program({', '.join(params)}):"]
        imports = [f"from math import inf, nan, {', '.join(sorted(_MATH_NAMES))}",
                   "from operator import add, sub, mul, truediv, neg, pow",
                   "from itertools import repeat"]
        if self.helpers:
            imports.append(f"from {__name__} import {', '.join(sorted(self.helpers))}")
        constants = [f"# {name}: {_bound_kind(value)}, bound when compiled"
                     for name, value in self.bound.items()]
        return "\n".join(imports + [""] + constants + head + self.lines) + "\n"

    def leaves_of(self, eq):
        """The materialised values that the statement of eq reads, through what it fuses
        (a walk with a stack: a group may fuse a hundred equations)."""
        leaves, stack = [], [eq]
        while stack:
            eq = stack.pop()
            if not (eq.output in self.virtual or isinstance(_rule_of(eq), _Elementwise)
                    or self._fusable_matmul(eq)):
                leaves += [self.resolve(v) for v in eq.inputs]
                continue
            for v in eq.inputs:
                v = self.resolve(v)
                if v in self.inlined or v in self.virtual or v in self.swapped:
                    stack.append(self.producer[v])
                else:
                    leaves.append(v)
        return leaves

    def statement(self, eq):
        """The right-hand side that computes eq's output (with what it fuses)."""
        rule = _rule_of(eq)
        if isinstance(rule, _Elementwise) or self._fusable_matmul(eq):
            return _Comprehension(self, eq).text()
        if rule is None:
            name = self.fresh(f"{_identifier(eq.op, set())}_{len(self.bound)}")
            self.bound[name] = _primitive_call(eq)
            return [], f"{name}({', '.join(self.name(v) for v in eq.inputs)})"
        self.helpers[rule.name] = globals()[rule.name]
        args = [self.name(v) for v in eq.inputs]
        if rule.listed:
            args = [f"[{', '.join(args)}]"]
        for a in _kernel_args(eq, rule):
            if isinstance(a, _Name):
                self.helpers[str(a)] = globals()[a]
            args.append(repr(a))
        return [], f"{rule.name}({', '.join(args)})"


def _folded(program):
    """{output: a constant Var of its value} for each equation whose inputs are all constants
    (or folded in turn), computed once, as the code is written, with the rule eager rax runs,
    so bit for bit eager rax's answer. A broadcast_to that repeats values and that code
    reads is left to the code, which reads its source in place (0.0001, not a list of
    them). A speed device: the backward of W4's chain is all constants (the compiled step
    0.93 -> 0.40 of the hand loop in instructions, with one-element groups as expressions).
    Your primitives are not run early."""
    folded, spread = {}, set()  # spread: folded broadcasts that repeat values
    known = program._constant_data  # what the trace computed (see Program._equations)
    for eq in program.equations:
        if eq.output not in known:  # it depends on an input
            continue
        data = known[eq.output]
        if data is None:
            inputs = [folded.get(v, v) for v in eq.inputs]
            if any(v.data is None for v in inputs) or _rule_of(eq) is None:
                continue
            try:
                data = _run_equation(eq, [v.data for v in inputs])
            except (ArithmeticError, ValueError):  # left to the code, which raises as eager
                continue
        folded[eq.output] = Var(eq.output.name, eq.output.shape, data=data,
                                dtype=eq.output.dtype)
        if eq.kind == "broadcast_to" and math.prod(eq.output.shape) > math.prod(
                eq.inputs[0].shape):
            spread.add(eq.output)
    read = set(program.outputs).union(*[eq.inputs for eq in program.equations
                                        if eq.output not in folded])
    for v in spread & read:
        del folded[v]
    return folded


def _primitive_call(eq):
    """A primitive of your own, or a traced loop or cond, as a function of data, as
    compiled code calls it."""
    forward, attrs = eq.forward, eq.attrs
    shapes = [(v.shape, v.dtype) for v in eq.inputs]

    def call(*data):
        return forward(*[_leaf(d, *s) for d, s in zip(data, shapes)], **attrs).data
    call.kind = (f"a traced {eq.op} (its programs compiled on their own)"
                 if getattr(forward, "traced_op", None) else "your primitive")
    return call


def _bound_kind(value):
    """What a name bound in compiled code is, as its comment says."""
    return value.kind if callable(value) else "a constant"


def _only_element(data, shape):
    """The element of a one-element value's data: 2.0 of [[2.0]]."""
    for _ in shape:
        data = data[0]
    return data


def _literal(value):
    """A float (or bool, or complex) as Python source: 2.0, -0.0, inf, nan, -nan (0 * inf's
    sign), True, complex(1.0, -0.0) (which keeps the signs of zeros, as 1-0j would not)."""
    if type(value) is bool:
        return repr(value)
    if type(value) is complex:
        return f"complex({_literal(value.real)}, {_literal(value.imag)})"
    if value != value:
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _identifier(text, taken):
    """A Python name made of text (an argument's path: args[0]['w'] -> arg0_w), not taken."""
    name = re.sub(r"\W+", "_", text).strip("_") or "x"
    name = re.sub(r"^args_(\d+)", r"arg\1", name)
    name = re.sub(r"^kwargs_", "", name)
    if name[0].isdigit():
        name = "arg" + name
    if re.fullmatch(r"[tcv][0-9]+(_\w*)?", name):  # the generated code's own names: t3, v3_c
        name = "arg_" + name
    while name in taken or name in _RESERVED or name in globals() or hasattr(builtins, name):
        name += "_"  # not a name the generated code uses for anything else
    return name


# The math module's functions that elementwise rules call by name ("exp({0})"), which
# compiled code imports; the rules' other functions are rax's safe ones (appendix B).
_MATH_NAMES = frozenset(name for rule in _RULES.values() if isinstance(rule, _Elementwise)
                        for name in re.findall(r"\b([a-z]\w*)\(", rule.expr)
                        if hasattr(math, name))
_RESERVED = _MATH_NAMES | frozenset(("program", "inf", "nan",
                       "add", "sub", "mul", "truediv", "neg", "pow", "repeat", "sum", "map",
                       "zip", "range", "list", "abs", "len", "row", "column", "row0", "row1",
                       "column0", "column1", "np", "jnp", "jax", "torch", "math", "as_array",
                       "as_dtype", "logsumexp", "scatter", "one_hot", "index_array",
                       "take_backward", "im2col", "col2im", "argext", "_added", "take_or_empty",
                       "cofactors", "eigh_packed",
                       "_program")) | frozenset(
    keyword.kwlist)


# The longest dot product that compiled code writes out, (0.0 + row0 * column0 + row1 *
# column1 + ...), rather than sum(map(mul, row, column)): a speed device. Python's float
# operators then do the work without a call per term (W3b's step 0.86 -> 0.74 of the hand
# loop, W3a's 0.74 -> 0.58; 128 terms buy little more, 0.72, for twice the text). The terms
# are added left to right from 0.0 as sum() adds them until Python 3.12, which compensates
# its sums of floats: there only 1 or 2 terms, where the two agree, are written out. (Where
# two nans meet, which of them comes out is left open by IEEE 754, as in any a * b.)
_DOT_TERMS = 64 if sys.version_info < (3, 12) else 2

# How tightly the text of an elementwise rule binds, for Python's binary operators: an
# operand that binds more tightly than its place needs no parentheses (formatted).
_ATOM_PRECEDENCE = 3
_PRECEDENCE = {"{0} + {1}": 1, "{0} - {1}": 1, "{0} * {1}": 2, "{0} / {1}": 2}


class _Comprehension:
    """The expression of one fused group: an elementwise equation (or a 2-D matmul) with
    the equations written into it, as one comprehension over the rows of its shape."""

    def __init__(self, writer, root):
        self.writer, self.root = writer, root
        self.shape = root.output.shape
        self.operands = []   # (name, source shape): materialised values the group reads
        self.bindings = []   # (name, expression): values used twice, bound once per element
        self.matmul = None   # (x name, y columns name) of the matmul in the group, if any
        self.pre = []        # statements before the comprehension (a matmul's columns)

    def text(self):
        """(statements to run first, the expression of the whole group)."""
        expr = self.expression(self.root.output, top=True)
        return self.loops(expr)

    def operand(self, var, shape):
        """The placeholder of a materialised operand: replaced by its element's name."""
        operand = (self.writer.name(var), shape)
        if operand not in self.operands:
            self.operands.append(operand)
        return f"\x00{self.operands.index(operand)}\x00"

    def expression(self, var, top=False):
        """The text of var's value at one element; self.precedence says how tightly it
        binds (see formatted)."""
        writer = self.writer
        self.precedence = _ATOM_PRECEDENCE  # (a name, a number, a call; else set below)
        literal = writer.literals.get(var)  # (found before: W4 reads 1.0001 10,000 times)
        if literal is not None:
            return literal
        read, var = var, writer.resolve(var)
        if var.data is not None and math.prod(var.shape) == 1:  # the same at every element
            literal = writer.literals[read] = _literal(_only_element(var.data, var.shape))
            return literal
        if not top and var not in writer.inlined and var not in writer.virtual:
            return self.operand(var, var.shape)
        eq = writer.producer[var]
        if eq.kind == "broadcast_to":  # virtual: its source, read where it has the side
            source = writer.resolve(eq.inputs[0])
            if source.data is not None and math.prod(source.shape) == 1:
                literal = writer.literals[read] = _literal(_only_element(source.data,
                                                                         source.shape))
                return literal
            if source in writer.inlined or source in writer.virtual:
                return self.expression(source)
            return self.operand(source, source.shape)
        if eq.kind == "matmul":  # the rows of x, the columns of y (see loops)
            x, y = (writer.resolve(v) for v in eq.inputs)
            # A transposed operand is read from its source: the rows of x.T are zip(*x),
            # the columns of y.T are y's rows. (W3b: 4% of the step, 3 transposes.)
            rows = f"zip(*{writer.name(writer.producer[x].inputs[0])})" \
                if x in writer.swapped else writer.name(x)
            if y in writer.swapped:
                self.matmul = rows, writer.name(writer.producer[y].inputs[0]), True
            else:
                self.matmul = rows, writer.name(y), False
            self.inner = x.shape[-1]
            return "\x01"
        rule = _rule_of(eq)
        template = rule.safe_expr() if writer.safe else rule.expr
        operands, precedences = [], []
        for v in eq.inputs:
            operands.append(self.expression(v))
            precedences.append(self.precedence)  # (what that call found)
        if eq.kind == "pow_scalar":
            operands.append(_literal(eq.attrs["exponent"]))
            precedences.append(_ATOM_PRECEDENCE)
        self.precedence = _PRECEDENCE.get(template, 0)
        return self.formatted(template, operands, precedences)

    def formatted(self, template, operands, precedences):
        """The template with its operands, in parentheses where Python needs them: not
        around a name, a number or a call, nor around a * b in c + a * b, nor around a + b in
        a + b + c (a left operand of its own precedence: Python adds left to right too). A
        speed device as well as a plainer text: W4's code has half its parentheses, and
        Python compiles it in 20 ms instead of 33."""
        helpers, repeated, _ = _template_facts(template)
        for name in helpers:
            self.writer.helpers[name] = globals()[name]
        parent, texts = _PRECEDENCE.get(template), []
        for i, (text, precedence) in enumerate(zip(operands, precedences)):
            if _is_atom(text) or parent is not None and (
                    precedence > parent or precedence == parent and i == 0):
                texts.append(text)
            elif i in repeated:
                bound = self.writer.fresh(f"v{self.writer.count}_{len(self.bindings)}")
                self.bindings.append((bound, text))
                texts.append(bound)
            else:
                texts.append(f"({text})")
        return template.format(*texts)

    def loops(self, expr):
        """(statements to run first, the comprehension computing expr at every position of
        the group's shape)."""
        shape, k = self.shape, len(self.shape)
        if self.matmul is None and k and math.prod(shape) == 1:
            return self.one_element(expr)
        names = [name for name, _ in self.operands]
        before, clauses = [], []
        if self.matmul is not None:  # the columns of y, once
            x, y, ready = self.matmul
            columns = y if ready else self.writer.fresh(f"{y}_columns")
            if not ready:
                before.append(f"{columns} = list(zip(*{y}))")
        for level in range(k):
            iterated, targets = [], []
            for j, (name, source) in enumerate(self.operands):
                lead = k - len(source)
                if level < lead:
                    continue
                if source[level - lead] == shape[level]:
                    element = self.writer.fresh(
                        f"{name}_{_INDEX_LETTERS[level]}" if level < len(_INDEX_LETTERS)
                        else f"{name}_{level}")
                    iterated.append(names[j])
                    targets.append(element)
                    names[j] = element
                else:  # a side of 1, repeated
                    names[j] = f"{names[j]}[0]"
            small = self.matmul is not None and self.inner <= _DOT_TERMS
            if self.matmul is not None and level == k - 2:
                iterated.append(x)
                targets.append(f"({', '.join(f'row{i}' for i in range(self.inner))},)"
                               if small else "row")
            if self.matmul is not None and level == k - 1:
                iterated.append(columns)
                targets.append(f"({', '.join(f'column{i}' for i in range(self.inner))},)"
                               if small else "column")
            clauses.append(_for_clause(targets, iterated, shape[level]))

        def filled(text):
            for j, name in enumerate(names):
                text = text.replace(f"\x00{j}\x00", name)
            if self.matmul is not None and self.inner <= _DOT_TERMS:  # (see _DOT_TERMS)
                terms = " + ".join(f"row{i} * column{i}" for i in range(self.inner))
                return text.replace("\x01", f"(0.0 + {terms})")
            return text.replace("\x01", "sum(map(mul, row, column))")

        expr = filled(expr)
        if not k:  # a 0-d group: values used twice are bound first
            return before + [f"{name} = {filled(text)}" for name, text in self.bindings], expr
        inner = clauses[-1] + "".join(f" for {name} in [{filled(text)}]"
                                      for name, text in self.bindings)
        body = f"[{expr} {inner}]"
        for clause in reversed(clauses[:-1]):
            body = f"[{body} {clause}]"
        return before, body


    def one_element(self, expr):
        """A group of one element, [[x[0][0] * 2.0]], is an expression: a comprehension
        costs a function call and a frame (W4's chain on a (1,) tensor: 1,521 instructions
        each, ~40% of the step)."""
        names = [name + "[0]" * len(source) for name, source in self.operands]

        def filled(text):
            for j, name in enumerate(names):
                text = text.replace(f"\x00{j}\x00", name)
            return text

        k = len(self.shape)
        return ([f"{name} = {filled(text)}" for name, text in self.bindings],
                "[" * k + filled(expr) + "]" * k)


def _for_clause(targets, iterables, side):
    """for x_i, b_i in zip(x, b): the loop over one axis (range(side) if nothing varies)."""
    if not iterables:
        return f"for _ in range({side})"
    if len(iterables) == 1:
        return f"for {targets[0]} in {iterables[0]}"
    return f"for {', '.join(targets)} in zip({', '.join(iterables)})"


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)  # (one entry per rule: W4's first call -4%)
def _template_facts(template):
    """What code needs to know of an elementwise rule's template: the helpers of rax's that
    it calls (_exp, say), the operands it reads more than once (bound to a name), and the
    parentheses it opens (see _MAX_DEPTH)."""
    helpers = tuple(name for name in re.findall(r"[A-Za-z_]\w*(?=\()", template)
                    if name.startswith("_"))
    return helpers, frozenset(i for i in range(template.count("{"))
                              if template.count("{%d}" % i) > 1), template.count("(")


_ATOM = re.compile(r"[\w.\x00\x01]+|[A-Za-z_]\w*\([^()]*\)|\([^()]*\)")


def _is_atom(text):
    """Whether text needs no parentheses as an operand: a name, a placeholder, a
    non-negative number or a call."""
    return bool(_ATOM.fullmatch(text)) and not text.startswith("-")


# ---- 10b. Other backends: NumPy, JAX, PyTorch ----------------------------------------------
#
# The same program as array code, for a model that has outgrown lists: one statement per
# equation, the arrays of the library doing the loops. A backend is a table: for each op,
# the expression that computes its output from its inputs' names, written so that it gives
# rax's answer (relu(-0.0) is -0.0, maximum of a nan is nan, the sum over no axes turns
# -0.0 into 0.0), within rounding, since a library may add in another order. The library is
# imported by the generated code, never by rax.py; compile(backend) imports it then.

_ARRAY_OPS = {  # op -> expression over the inputs {0}, {1}, ...; {xp} is the array module
    "neg": "-{0}", "exp": "{xp}.exp({0})", "log": "{xp}.log({0})", "sqrt": "{xp}.sqrt({0})",
    "sin": "{xp}.sin({0})", "cos": "{xp}.cos({0})", "tanh": "{xp}.tanh({0})",
    "abs": "{xp}.abs({0})", "sigmoid": "1.0 / (1.0 + {xp}.exp(-{0}))",
    "floor": "{xp}.floor({0})", "ceil": "{xp}.ceil({0})", "round": "{xp}.round({0})",
    "erf": "erf({0})", "cumsum": "{xp}.cumsum({0}, {dim}={axis})",
    **{name: "{xp}.%s({0})" % name for name in (
        "tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh",
        "log1p", "expm1", "log2", "log10", "exp2")},
    **{name: "{xp}.%s({0}, {1})" % name for name in ("arctan2", "hypot", "logaddexp")},
    "cumprod": "{xp}.cumprod({0}, {dim}={axis})",
    "argsort": "as_array({xp}.argsort({0}, axis={axis}, stable=True))",
    "mod": "{xp}.remainder({0}, {1})", "floor_divide": "{xp}.floor_divide({0}, {1})",
    "relu": "{xp}.where({0} < 0.0, 0.0, {0})",
    "relu_backward": "{xp}.where({1} <= 0.0, 0.0, {0})",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "pow": "{xp}.power({0}, {1})",
    "maximum": "{xp}.where(({0} > {1}) | ({0} != {0}), {0}, {1})",
    "minimum": "{xp}.where(({0} < {1}) | ({0} != {0}), {0}, {1})",
    "less": "{0} < {1}", "less_equal": "{0} <= {1}", "greater": "{0} > {1}",
    "greater_equal": "{0} >= {1}", "equal": "{0} == {1}", "not_equal": "{0} != {1}",
    "where": "{xp}.where({0}, {1}, {2})", "astype": "as_dtype({0}, '{dtype}')",
    "logical_and": "{xp}.logical_and({0}, {1})", "logical_or": "{xp}.logical_or({0}, {1})",
    "logical_xor": "{xp}.logical_xor({0}, {1})", "logical_not": "{xp}.logical_not({0})",
    "signbit": "{xp}.signbit({0})",
    "any": "{xp}.any({0}, axis={axis}, keepdims={keepdims})",
    "all": "{xp}.all({0}, axis={axis}, keepdims={keepdims})",
    "identity": "{0}", "stop_gradient": "{0}",
    "broadcast_to": "{xp}.broadcast_to({0}, {shape})", "reshape": "{xp}.reshape({0}, {shape})",
    "transpose": "{xp}.transpose({0}, {axes})", "getitem": "{0}[{index}]",
    "concatenate": "{xp}.concatenate([{all}], axis={axis})", "matmul": "{0} @ {1}",
    "sum": "{xp}.sum({0}, axis={axis}, keepdims={keepdims})",
    "max": "{xp}.max({0}, axis={axis}, keepdims={keepdims})",
    "prod": "{xp}.prod({0}, axis={axis}, keepdims={keepdims})",
    "min": "{xp}.min({0}, axis={axis}, keepdims={keepdims})",
    "logsumexp": "logsumexp({0}, {axis}, {shape})",
    "scatter": "scatter({0}, {index_repr}, {shape})",
    "take": "{xp}.take({0}, index_array({1}, {n}), axis={axis})",
    "take_backward": "take_backward({0}, index_array({1}, {n}), {shape}, {axis})",
    "checked_indices": "as_array(index_array({0}, {n}))",
    "im2col": "im2col({0}, {kernel}, {stride}, {padding}, {dilation}, {fill_text})",
    "col2im": "col2im({0}, {shape_in}, {kernel}, {stride}, {padding}, {dilation})",
    "argmax": "as_array({xp}.argmax({0}, axis={axis}, keepdims={keepdims}))",
    "argmin": "as_array({xp}.argmin({0}, axis={axis}, keepdims={keepdims}))",
    "one_hot": "one_hot({0}, {num_classes})",
    "inv": "{xp}.linalg.inv({0})", "solve": "{xp}.linalg.solve({0}, {1})",
    "det": "{xp}.linalg.det({0})", "cofactors": "cofactors({0})",
    "sign_of_det": "{xp}.linalg.slogdet({0})[0]", "logabsdet": "{xp}.linalg.slogdet({0})[1]",
    "cholesky": "{xp}.linalg.cholesky({0})", "eigh": "eigh_packed({0}, {UPLO!r})",
    "real": "{xp}.real({0})", "imag": "{xp}.imag({0})", "conj": "{xp}.conj({0})",
    "angle": "{xp}.angle({0})", "complex": "complex_of({0}, {1})",
    **{name: "{xp}.fft.%s({0}, n={n}, %s={axis}, norm={norm!r})" % (name, "{dim}")
       for name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft")},
}

# What each library says differently. torch has no negative slice steps: an index is read
# through the flat positions it picks (computed once, when the code is written).
_TORCH_OPS = dict(_ARRAY_OPS, **{
    "broadcast_to": "{0}.expand({shape})", "transpose": "{0}.permute({axes})",
    "getitem": "{0}.reshape(-1)[{positions}].reshape({shape})",
    "scatter": "scatter({0}, {positions}, {shape})", "stop_gradient": "{0}.detach()",
    "getitem_forward_steps": "{0}[{index}]",
    "scatter_forward_steps": "scatter_slices({0}, {index_repr}, {shape})",
    "concatenate": "torch.cat([{all}], dim={axis})", "pow": "torch.pow({0}, {1})",
    "take": "torch.index_select({0}, {axis}, index_array({1}, {n}).reshape(-1))"
            ".reshape({shape})",
    "argmax": "as_array(argext(torch.argmax, {0}, {axis}, {keepdims}))",
    "argsort": "as_array(torch.argsort({0}, dim={axis}, stable=True))",
    "argmin": "as_array(argext(torch.argmin, {0}, {axis}, {keepdims}))",
    "sum": "torch.sum({0}, dim={axis}, keepdim={keepdims})",
    "max": "torch.amax({0}, dim={axis}, keepdim={keepdims})",
    "prod": "torch_prod({0}, {axis}, {keepdims})",
    "min": "torch.amin({0}, dim={axis}, keepdim={keepdims})",
    "conj": "torch.conj_physical({0})",
})
_JAX_OPS = dict(_ARRAY_OPS, **{
    "stop_gradient": "jax.lax.stop_gradient({0})",
    "take": "take_or_empty({0}, index_array({1}, {n}), {axis})",
})

# Helpers that the code of each backend defines at its top, in that library.
_ARRAY_HELPERS = '''
def as_array(x):
    """x (nested lists, a number, an array) as a float64 array."""
    return {as_array}


def as_dtype(x, dtype):
    """x as an array of rax's dtype "float64", "bool" or "complex128"."""
    return {as_dtype}


def complex_of(x, y):
    """x + iy from two real arrays, part by part (x + 1j * y would make nans of infs)."""
    return {complex_of}


def plus_zero(x):
    """x + 0.0: -0.0 becomes 0.0, everything else stays (XLA would drop a + 0.0)."""
    return {xp}.where(x == 0.0, 0.0, x)


def im2col(x, kernel, stride, padding, dilation, fill):
    """The windows of x (N, C, H, W) as rows (N, OH * OW, C * kh * kw), rax's im2col."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c = x.shape[0], x.shape[1]
    x = {pad}
    oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    windows = [x[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
               for i in range(kh) for j in range(kw)]
    return {xp}.stack(windows, {dim}=2).reshape(n, c * kh * kw, oh * ow).{swap}


def col2im(g, shape, kernel, stride, padding, dilation):
    """The adjoint of im2col: each patch added back where it was read."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    g = g.{swap}.reshape(n, c, kh * kw, oh, ow)
    out = {xp}.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype={xp}.float64)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                      slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))
            out = {add_at}
    return out[:, :, ph:ph + h, pw:pw + w]


def cofactors(a):
    """rax's gradient of det: (-1)**(i+j) times the determinant of a without row i and
    column j, for every i and j (all the minors at once: right at a singular a too)."""
    n = a.shape[-1]
    keep = {xp}.asarray([[k for k in range(n) if k != i] for i in range(n)],
                        dtype={xp}.int64).reshape(n, n - 1)
    minors = a[..., keep[:, None, :, None], keep[None, :, None, :]]
    signs = {xp}.asarray([[(-1.0) ** (i + j) for j in range(n)] for i in range(n)],
                         dtype={xp}.float64)
    return signs * {xp}.linalg.det(minors)


def eigh_packed(a, uplo):
    """rax's eigh: the eigenvalues (ascending) in row 0, the eigenvectors below, each
    scaled so that its first entry of largest magnitude is positive (divided by its phase,
    which is its sign for a real matrix: -1.0 or 1.0, exactly)."""
    w, v = {eigh}
    first = {xp}.argmax({xp}.abs(v), {dim}=-2)
    mask = {xp}.arange(v.shape[-1])[:, None] == first[..., None, :]
    picked = {sum}(v * mask, {dim}=-2, {keepdim}=True)
    return {cat}([w[..., None, :], v / (picked / {xp}.abs(picked))], {dim}=-2)


def logsumexp(x, axis, shape):
    """rax's logsumexp: log(sum(exp(x - m))) + m, m the largest (0 where infinite)."""
    if 0 in [x.shape[a] for a in axis]:
        m = {xp}.zeros([1 if i in axis else n for i, n in enumerate(x.shape)],
                       dtype={xp}.float64)
    else:
        m = {amax}(x, {dim}=axis, {keepdim}=True)
        m = {xp}.where({xp}.abs(m) == inf, 0.0, m)
    return {xp}.reshape({xp}.log({sum}({xp}.exp(x - m), {dim}=axis, {keepdim}=True)) + m, shape)
'''
_NUMPY_HELPERS = _ARRAY_HELPERS + '''

def _added(out, window, values):
    """out with values added at window (out is col2im's own fresh array)."""
    out[window] += values
    return out


erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf of its own


def scatter(g, index, shape):
    """Zeros of shape with g written at [index] (the gradient of indexing)."""
    out = np.zeros(shape, dtype=g.dtype)
    out[index] = g
    return out


def index_array(indices, n):
    """Integer indices along a side of n, negatives from the end, else an IndexError."""
    indices = as_array(indices)
    if not np.all((indices == np.floor(indices)) & (indices >= -n) & (indices < n)):
        raise IndexError(f"an index is not an integer in [-{{n}}, {{n}})")
    return np.where(indices < 0, indices + n, indices).astype(np.int64)


def take_backward(g, indices, shape, axis):
    """Zeros of shape with g added where take read (a repeated index adds up)."""
    out = np.zeros(shape, dtype=g.dtype)
    np.add.at(out, (slice(None),) * axis + (indices,), g)
    return out


def one_hot(labels, n):
    """Rows with a 1.0 at each label, which must be an integer in [0, n)."""
    labels = as_array(labels)
    if not np.all((labels == np.floor(labels)) & (labels >= 0) & (labels < n)):
        raise ValueError(f"one_hot: a label is not an integer in [0, {{n}})")
    return (labels[..., None] == np.arange(n)).astype(np.float64)
'''
_JAX_HELPERS = _ARRAY_HELPERS + '''

from jax.scipy.special import erf  # noqa: E402


def scatter(g, index, shape):
    """Zeros of shape, of g's dtype, with g written at [index] (the gradient of indexing)."""
    g = jnp.asarray(g)
    return jnp.zeros(shape, g.dtype).at[index].set(g)


def take_or_empty(x, indices, axis):
    """jnp.take, or zeros of the result's shape where there are no indices (jnp.take of an
    empty axis fails)."""
    if indices.size == 0:
        return jnp.zeros(x.shape[:axis] + indices.shape + x.shape[axis + 1:])
    return jnp.take(x, indices, axis=axis)


def index_array(indices, n):
    """Integer indices along a side of n, negatives from the end (under jax.jit nothing
    can be raised: JAX clamps an index out of range)."""
    indices = as_array(indices)
    return jnp.where(indices < 0, indices + n, indices).astype(jnp.int64)


def take_backward(g, indices, shape, axis):
    """Zeros of shape with g added where take read (a repeated index adds up)."""
    return jnp.zeros(shape, g.dtype).at[(slice(None),) * axis + (indices,)].add(g)


def one_hot(labels, n):
    """Rows with a 1.0 at each label (a label outside [0, n) gives a row of zeros: under
    jax.jit nothing can be raised)."""
    labels = as_array(labels)
    return (labels[..., None] == jnp.arange(n)).astype(jnp.float64)
'''
_TORCH_HELPERS = _ARRAY_HELPERS + '''

def _added(out, window, values):
    """out with values added at window (out is col2im's own fresh tensor)."""
    out[window] += values
    return out


erf = torch.erf


def scatter_slices(g, index, shape):
    """Zeros of shape with g written at [index] (the gradient of indexing)."""
    out = torch.zeros(shape, dtype=g.dtype)
    out[index] = g
    return out


def scatter(g, positions, shape):
    """Zeros of shape with g written at the flat positions (the gradient of indexing)."""
    out = torch.zeros(math.prod(shape), dtype=g.dtype)
    out[positions] = g.reshape(-1)
    return out.reshape(shape)


def index_array(indices, n):
    """Integer indices along a side of n, negatives from the end, else an IndexError."""
    indices = as_array(indices)
    if not bool(torch.all((indices == torch.floor(indices)) & (indices >= -n) & (indices < n))):
        raise IndexError(f"an index is not an integer in [-{{n}}, {{n}})")
    return torch.where(indices < 0, indices + n, indices).to(torch.long)


def take_backward(g, indices, shape, axis):
    """Zeros of shape with g added where take read (a repeated index adds up)."""
    out = torch.zeros(shape, dtype=g.dtype)
    indices = indices.reshape(-1)
    sides = list(shape[:axis]) + [indices.numel()] + list(shape[axis + 1:])  # (-1 is
    return out.index_add_(axis, indices, g.reshape(sides))  # ambiguous when g is empty)


def torch_prod(x, axis, keepdims):
    """The product over several axes (torch.prod takes one at a time)."""
    for a in sorted(axis, reverse=True):
        x = torch.prod(x, dim=a, keepdim=keepdims)
    return x


def argext(pick, x, axis, keepdims):
    """torch.argmax or argmin as NumPy's: over the flattened tensor when axis is None."""
    if axis is None:
        index = pick(x.reshape(-1))
        return index.reshape([1] * x.dim()) if keepdims else index
    return pick(x, dim=axis, keepdim=keepdims)


def one_hot(labels, n):
    """Rows with a 1.0 at each label, which must be an integer in [0, n)."""
    labels = as_array(labels)
    if not bool(torch.all((labels == torch.floor(labels)) & (labels >= 0) & (labels < n))):
        raise ValueError(f"one_hot: a label is not an integer in [0, {{n}})")
    return (labels[..., None] == torch.arange(n)).to(torch.float64)
'''


class _Backend:
    """One library's table: its imports, the name of its array module, its ops and helpers,
    how a float becomes an array of it, and what to install."""

    def __init__(self, name, imports, xp, ops, helpers, words, install):
        self.name, self.imports, self.xp, self.ops = name, imports, xp, ops
        self.helpers = helpers.format(xp=xp, **words)
        self.words, self.install = words, install


# NumPy's own: np.sum's wrapper costs more than the sum of a small array (np.add.reduce is
# what it calls), and x.transpose(axes) skips np.transpose's (W3a's body: 46 -> 39 us).
_NUMPY_OPS = dict(_ARRAY_OPS, **{
    "sum": "np.add.reduce({0}, axis={axis}, keepdims={keepdims})",
    "transpose": "{0}.transpose({axes})",
})

_BACKENDS = {
    "numpy": _Backend("numpy", "import numpy as np", "np", _NUMPY_OPS, _NUMPY_HELPERS,
                      {"amax": "np.max", "sum": "np.sum", "dim": "axis", "keepdim": "keepdims",
                       "pad": "np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), "
                              "constant_values=fill)",
                       "swap": "transpose(0, 2, 1)",
                       "add_at": "_added(out, window, g[:, :, i * kw + j])",
                       "as_array": "np.asarray(x, dtype=np.float64)",
                       "as_dtype": "np.asarray(x, dtype={'bool': np.bool_, 'complex128': "
                                   "np.complex128}.get(dtype, np.float64))",
                       "complex_of": "np.vectorize(complex, otypes=[np.complex128])(x, y)",
                       "power": "np.power",
                       "eigh": "np.linalg.eigh(a, UPLO=uplo)",
                       "cat": "np.concatenate", "copy": "{}.copy()"},
                      "pip install numpy"),
    "jax": _Backend("jax", "import jax\nimport jax.numpy as jnp\n\n"
                    "jax.config.update(\"jax_enable_x64\", True)  # rax computes in float64",
                    "jnp", _JAX_OPS, _JAX_HELPERS,
                    {"amax": "jnp.max", "sum": "jnp.sum", "dim": "axis", "keepdim": "keepdims",
                     "pad": "jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), "
                            "constant_values=fill)",
                     "swap": "transpose(0, 2, 1)",
                     "add_at": "out.at[window].add(g[:, :, i * kw + j])",
                     "as_array": "jnp.asarray(x, dtype=jnp.float64)",
                     "as_dtype": "jnp.asarray(x, dtype={'bool': jnp.bool_, 'complex128': "
                                 "jnp.complex128}.get(dtype, jnp.float64))",
                     "complex_of": "jax.lax.complex(jnp.asarray(x, jnp.float64), "
                                   "jnp.asarray(y, jnp.float64))",
                     "power": "jnp.power",
                     "eigh": "jnp.linalg.eigh(a, UPLO=uplo, symmetrize_input=False)",
                     "cat": "jnp.concatenate", "copy": "{}"},
                    "pip install jax"),
    "torch": _Backend("torch", "import torch", "torch", _TORCH_OPS, _TORCH_HELPERS,
                      {"amax": "torch.amax", "sum": "torch.sum", "dim": "dim",
                       "keepdim": "keepdim",
                       "pad": "torch.nn.functional.pad(x, (pw, pw, ph, ph), value=fill)",
                       "swap": "permute(0, 2, 1)",
                       "add_at": "_added(out, window, g[:, :, i * kw + j])",
                       "as_array": "torch.as_tensor(x, dtype=torch.float64)",
                       "as_dtype": "torch.as_tensor(x, dtype={'bool': torch.bool, "
                                   "'complex128': torch.complex128}.get(dtype, torch.float64))",
                       "complex_of": "torch.complex(torch.as_tensor(x, dtype=torch.float64), "
                                     "torch.as_tensor(y, dtype=torch.float64))",
                       "power": "torch.pow",
                       "eigh": "torch.linalg.eigh(a, UPLO=uplo)",
                       "cat": "torch.cat", "copy": "{}.clone()"},
                      "pip install torch"),
}


def _array_source(program, backend):
    """The source of the program in the library of `backend` (see _BACKENDS)."""
    defs, constants = [], []
    params, lines = _array_lines(program, backend, "", defs, constants)
    return _array_module(backend, params, constants, defs, lines)


def _array_lines(program, backend, prefix, defs, constants):
    """(params, lines) of the function of the program in the library of `backend`: its
    constants are added to `constants` (named with the prefix: made once, on top), and
    the functions of a loop's or cond's programs to `defs` (see _traced_op_lines)."""
    table, names, lines = _BACKENDS[backend], {}, []
    params = _input_names(program, names)
    folded, depth = _folded(program), {}  # depth: var -> its expression's operators (below)

    def name(var):
        var = folded.get(var, var)
        if var not in names:
            text = _array_constant(var, backend)
            if not var.shape:  # a 0-d constant: its value, written where it is used
                return text
            names[var] = f"{prefix}c{len(names)}"
            constants.append(f"{names[var]} = {text}")
        return names[var]

    users = _users_of(program)
    outputs, actual = set(program.outputs), {}  # actual: var -> its array's shape, where a
    for eq in program.equations:  # broadcast was left to the library
        if getattr(eq.forward, "traced_op", None) is not None:  # a loop or a cond
            lines += _traced_op_lines(eq, [name(v) for v in eq.inputs], backend,
                                      _array_name(eq, names), defs, constants)
            continue
        if getattr(eq.forward, "made_by_primitive", False) or (
                eq.op not in table.ops and eq.op != "pow_scalar"):
            raise ValueError(f"Program.source({backend!r}): op {eq.op!r} is a primitive of "
                             f"your own, whose forward is Python, or one that rax computes "
                             f"only itself (eig): it has no {backend} code")
        if eq.output in folded:
            continue
        operands = [name(v) for v in eq.inputs]
        if eq.op == "identity" or eq.op == "stop_gradient" and backend == "numpy" or (
                eq.op == "broadcast_to" and eq.output not in outputs and all(
                    isinstance(_rule_of(u), _Elementwise) or u.op == "pow_scalar"
                    for u in users.get(eq.output, ()))):
            # The same array; an elementwise op broadcasts its operands by itself.
            names[eq.output] = operands[0]
            actual[eq.output] = actual.get(eq.inputs[0], eq.inputs[0].shape)
            continue
        if all(_NUMBER.fullmatch(text) for text in operands):
            operands[0] = f"as_array({operands[0]})"  # numbers only: Python's 1.0 / 0.0 raises
        expression = _array_expression(eq, operands, table)
        rule = _rule_of(eq)
        if isinstance(rule, _Elementwise) or eq.op == "pow_scalar":
            shapes = [actual.get(v, v.shape) for v in eq.inputs]
            if _broadcast_shapes(eq.op, *shapes) != eq.output.shape:  # all were broadcast
                expression = table.ops["broadcast_to"].format(
                    f"({expression})", xp=table.xp, shape=eq.output.shape)
            if _written_in_its_user(eq, users, outputs, depth):
                names[eq.output] = f"({expression})"
                continue
        lines.append(f"    {_array_name(eq, names)} = {expression}")
    # A constant output is copied (the caller may write into it); a number made an array.
    outputs = ", ".join(table.words["copy"].format(name(v)) if folded.get(v, v).shape and
                        folded.get(v, v).data is not None else _as_array_code(name(v))
                        for v in program.outputs)
    lines.append(f"    return ({outputs}{',' if len(program.outputs) == 1 else ''})")
    return params, lines


_NUMBER = re.compile(r"-?(inf|nan|[0-9.e+-]+)")  # a number's literal in generated code


def _as_array_code(text):
    """The code of an operand, a number's literal made an array (helpers index arrays)."""
    return f"as_array({text})" if _NUMBER.fullmatch(text) else text


def _input_names(program, names):
    """The program's parameters: identifiers made from its inputs' paths, into names."""
    taken = set()
    for var in program.inputs:
        names[var] = _identifier(var.path, taken)
        taken.add(names[var])
    return [names[var] for var in program.inputs]


def _traced_op_lines(eq, operands, backend, out, defs, constants):
    """The lines of a traced scan, while_loop or cond: each of its programs a function of
    the module (in `defs`), called from a Python loop or if (NumPy, PyTorch) or from
    jax.lax.scan, while_loop or cond (JAX); `out` is the flat output, as rax's node."""
    op, table = eq.forward.traced_op, _BACKENDS[backend]
    operands = [_as_array_code(text) for text in operands]  # a body's arguments: arrays

    def function(program, what):  # the program as a function of the module: its name
        name = f"_{what}{len(defs)}"
        defs.append(None)  # (its place, before the functions its own loops add)
        params, lines = _array_lines(program, backend, name + "_", defs, constants)
        defs[defs.index(None)] = f"def {name}({', '.join(params)}):\n" + "\n".join(lines)
        return name
    flat = f"{table.words['cat']}([{table.xp}.ravel(as_array(v)) for v in {{}}])"
    if isinstance(op, _ScanOp):
        return _scan_lines(op, operands, backend, out, function(op.body, "scan_body"), flat)
    if isinstance(op, _CondOp):
        pred, tensors = operands[0], operands[1:]
        true, false = (f"{function(op.branches[b], ('false', 'true')[b])}"
                       f"({', '.join(op.inputs(b, tensors))})" for b in (True, False))
        if backend == "jax":  # lax.cond's values: float64 arrays, not weakly typed
            return [f"    {out}_o = jax.lax.cond({pred} != 0, lambda: {_strong(true)}, "
                    f"lambda: {_strong(false)})", f"    {out} = {flat.format(out + '_o')}"]
        return [f"    {out}_o = {true} if bool({pred}) else {false}",
                f"    {out} = {flat.format(out + '_o')}"]
    k, count, c = op.k, op.count, f"{out}_c"  # (names of the form v3_c: never a parameter's)
    test = f"{function(op.test, 'while_cond')}(*{c}{_more(operands[k:k + count])})[0]"
    body = f"{function(op.body, 'while_body')}(*{c}{_more(operands[k + count:])})"
    if backend == "jax":
        return [f"    def {out}_cond({c}):", f"        return jnp.reshape({test}, ()) != 0",
                f"    def {out}_body({c}):", f"        return {_strong(body)}",
                f"    {c} = jax.lax.while_loop({out}_cond, {out}_body, "
                f"{_strong(_tuple(operands[:k]))})", f"    {out} = {flat.format(c)}"]
    return [f"    {c} = {_tuple(operands[:k])}", f"    while bool({test}):",
            f"        {c} = {body}", f"    {out} = {flat.format(c)}"]


def _scan_lines(op, operands, backend, out, body, flat):
    """A traced scan's lines (see _traced_op_lines): a Python for loop, or jax.lax.scan."""
    k, m = op.k, op.m
    carry, xs, closed = operands[:k], operands[k:k + m], operands[k + m:]
    if backend == "jax":
        c, x, o = f"{out}_c", f"{out}_x", f"{out}_o"  # (never a parameter's name)
        return [f"    def {out}_step({c}, {x}):",
                f"        {o} = {body}(*{c}, *{x}{_more(closed)})",
                f"        return {_strong(f'{o}[:{k}]')}, {_strong(f'{o}[{k}:]')}",
                f"    {out}_c, {out}_ys = jax.lax.scan({out}_step, {_strong(_tuple(carry))}, "
                f"{_tuple(xs)}, length={op.n}, reverse={op.reverse})",
                f"    {out} = jnp.concatenate([jnp.ravel(v) for v in {out}_c + {out}_ys])"]
    order = f"range({op.n - 1}, -1, -1)" if op.reverse else f"range({op.n})"
    step = ", ".join([f"*{out}_c"] + [f"{x}[{out}_i]" for x in xs] + closed)
    stacked = (f"{out}_c + tuple({_BACKENDS[backend].xp}.stack([as_array(v) for v in y]) "
               f"for y in zip(*{out}_ys))")
    return [f"    {out}_c, {out}_ys = {_tuple(carry)}, [None] * {op.n}",
            f"    for {out}_i in {order}:",
            f"        {out}_o = {body}({step})",
            f"        {out}_c, {out}_ys[{out}_i] = {out}_o[:{k}], {out}_o[{k}:]",
            f"    {out} = {flat.format(stacked)}"]


def _users_of(program):
    """var -> the equations of the program that read it, in order."""
    users = {}
    for eq in program.equations:
        for v in eq.inputs:
            users.setdefault(v, []).append(eq)
    return users


def _tuple(names):
    """A tuple's code: (a,) or (a, b) or ()."""
    return f"({', '.join(names)},)" if names else "()"


def _more(names):
    """More arguments of a call: ', a, b', or ''."""
    return "".join(", " + name for name in names)


def _strong(code):
    """The values of `code` (a tuple) as float64 arrays (for JAX: not weakly typed)."""
    return f"tuple(as_array(v) for v in {code})"


def _array_module(backend, params, constants, defs, lines):
    """The whole text of a backend's program: imports, the helpers its lines use, its
    constants (made once, when it is loaded), its loops' and conds' functions and the
    function."""
    table = _BACKENDS[backend]
    head = (f"# rax program as {backend} code; every array is float64, or bool where a "
            f"comparison made it, or complex128.\n"
            f"import math\nfrom math import inf, nan\n\n{table.imports}\n"
            f"\n\n{_helpers_used(table.helpers, lines + constants + defs)}\n\n\n"
            + "".join(line + "\n" for line in constants) + ("\n\n" if constants else "")
            + "".join(d + "\n\n\n" for d in defs) + f"def program({', '.join(params)}):")
    if backend == "numpy":  # 1/0 and log(0) are inf here, as in rax: no warnings
        head += "\n    with np.errstate(all=\"ignore\"):\n        return _program(" + \
                ", ".join(params) + ")\n\n\ndef _program(" + ", ".join(params) + "):"
    return head + "\n" + "\n".join(lines) + "\n"


def _written_in_its_user(eq, users, outputs, depth):
    """Whether an elementwise equation is written into the expression of its one user, an
    elementwise equation too: (x + b) * x, not v3 = x + b; v3 * x. A speed device: NumPy
    computes into a temporary that nothing else holds in place (W2, 256x256: 1.27 -> 1.18x
    NumPy by hand), as it does for the same expression written by hand."""
    readers = users.get(eq.output, ())
    if eq.output in outputs or len(readers) != 1 or not (
            isinstance(_rule_of(readers[0]), _Elementwise) or readers[0].op == "pow_scalar"):
        return False
    depth[eq.output] = 1 + _max((depth.get(v, 0) for v in eq.inputs), default=0)
    return depth[eq.output] < 8  # a line a reader can follow


def _helpers_used(helpers, lines):
    """The helper definitions (and their imports) that the program's lines use, with the
    helpers those use, in their order: a program reads only what it calls. as_array and
    as_dtype are always there (compile converts the arguments and results with them)."""
    chunks = re.split(r"\n(?=def |from )", helpers.strip("\n"))
    names = [re.match(r"(?:def (\w+)|from .* import (\w+))", c).group(1) or
             re.match(r"from .* import (\w+)", c).group(1) for c in chunks]
    wanted, text = {"as_array", "as_dtype"}, "\n".join(lines)
    while True:
        found = {n for n, c in zip(names, chunks) if re.search(rf"\b{n}\(", text)}
        if found <= wanted:
            break
        wanted |= found
        text += "\n".join(c for n, c in zip(names, chunks) if n in found)
    return "\n\n\n".join(c.strip("\n") for n, c in zip(names, chunks) if n in wanted)


def _array_constant(var, backend):
    """A constant as array code: a literal for a 0-d one (a tensor for torch's ops)."""
    convert = "as_array({})" if var.dtype is float64 else f"as_dtype({{}}, '{var.dtype}')"
    if not var.shape:
        literal = _literal(var.data)
        return convert.format(literal) if backend == "torch" else literal
    return f"{convert.format(_nested_literal(var.data))}.reshape({var.shape})"


def _array_name(eq, names):
    names[eq.output] = f"v{len(names)}"
    return names[eq.output]


def _array_expression(eq, operands, table):
    """The expression of one equation in a backend's table."""
    attrs = dict(eq.attrs)
    if eq.op in ("sum", "max", "min", "logsumexp", "prod", "any", "all") and not attrs["axis"]:
        # over no axes: each element alone (the sum turns -0.0 into 0.0, as rax's)
        return f"plus_zero({operands[0]})" if eq.op in ("sum", "logsumexp") else operands[0]
    if eq.op == "pow_scalar":
        exponent = attrs["exponent"]
        if exponent in (0.5, -0.5):  # the libraries take sqrt or rsqrt, which differ from
            root = (f"{table.xp}.where({operands[0]} == -inf, inf, "  # pow at -0.0 and -inf
                    f"plus_zero({table.xp}.sqrt({operands[0]})))")
            return root if exponent == 0.5 else f"1.0 / {root}"
        return f"{table.words['power']}({operands[0]}, {_literal(exponent)})"
    template = table.ops[eq.op]
    if eq.op in ("getitem", "scatter") and f"{eq.op}_forward_steps" in table.ops and all(
            not isinstance(k, slice) or (k.step or 1) > 0 for k in attrs["index"]):
        template = table.ops[f"{eq.op}_forward_steps"]  # torch slices by itself
    fields = {**table.words, "xp": table.xp, "all": ", ".join(operands),
              "shape": tuple(eq.output.shape)}
    for key, value in attrs.items():
        fields[key] = tuple(value) if key == "axis" and isinstance(value, tuple) else value
    if "index" in attrs:
        fields["index"], fields["index_repr"] = _index_text(attrs["index"]), attrs["index"]
        shape = eq.inputs[0].shape if eq.op == "getitem" else eq.output.shape
        fields["positions"] = _flat_positions(attrs["index"], shape)
    if eq.op in ("im2col", "col2im"):
        fields["fill_text"] = _literal(attrs.get("fill", 0.0))
        fields["shape_in"] = attrs.get("shape")
    if eq.op in ("take", "take_backward", "checked_indices"):  # the side indexed
        fields["n"] = attrs["n"] if eq.op == "checked_indices" else (
            eq.inputs[0].shape[attrs["axis"]] if eq.op == "take" else
            attrs["shape"][attrs["axis"]])
    return template.format(*operands, **fields)


def _index_text(index):
    """An index tuple as Python source: 1, ::-1, 0:2."""
    parts = []
    for k in index:
        if isinstance(k, slice):
            parts.append(":".join("" if v is None else str(v)
                                  for v in (k.start, k.stop, k.step)))
        else:
            parts.append(str(k))
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _flat_positions(index, shape):
    """The flat positions (row-major) that x[index] reads from a tensor of shape, as a
    list literal: torch reads an index with negative steps through them."""
    ranges = []
    for axis, n in enumerate(shape):
        k = index[axis] if axis < len(index) else slice(None)
        ranges.append([k] if isinstance(k, int) else list(range(n))[k])
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    positions = [_sum(i * s for i, s in zip(point, strides))
                 for point in itertools.product(*ranges)]
    return f"torch.tensor({positions}, dtype=torch.long)"


def _nested_literal(data):
    """Nested lists of floats as Python source (inf, nan by name)."""
    if isinstance(data, list):
        return "[" + ", ".join(_nested_literal(d) for d in data) + "]"
    return _literal(data)


# ============================================================================================
# Appendix A. Nested-list kernels
#
# Why they exist: a tensor's data is nested lists, and every op needs the same few loops over
# them: broadcast, map, reduce, multiply, move. Written once here, they run at C speed where
# they can (map over a row, sum(map(mul, ...)), zip(*rows) for a transpose), and the ops
# above read as math rather than as loops.
#
# Plain functions over nested lists of floats; no Tensor here. A tensor of shape (2, 3) is
# [[a, b, c], [d, e, f]]; a tensor of shape () is a bare float. Kernels recurse over the
# leading axis, and the innermost level is a comprehension or a map at C speed. Recursion
# depth is the number of axes, at most MAX_NDIM. No kernel changes its arguments, so kernels
# may return (parts of) their inputs, and repeated rows may be the same list object. The
# kernels without a leading underscore are public: the forward of a primitive of your own
# (chapter 9) may use them. They trust their caller and check nothing, by design: the ops
# check shapes and values first, so a kernel given what no op would give it (data of
# another shape, a string) may raise a raw Python error or cut operands short by zip.
# ============================================================================================

# Nested lists in, nested lists out (for the forward of a primitive of one's own).
__all__ += [
    "elementwise", "rowwise", "broadcast_lists", "reduce_lists", "matmul_lists",
    "reshape_lists", "transpose_lists", "index_lists", "scatter_lists", "concatenate_lists",
    "logsumexp_lists", "one_hot_lists", "take_lists", "take_backward_lists",
    "checked_indices_lists", "im2col_lists", "col2im_lists", "cumsum_lists",
    "cumprod_lists", "argsort_lists", "inv_lists", "solve_lists", "det_lists",
    "sign_of_det_lists", "logabsdet_lists", "cofactors_lists", "cholesky_lists", "eigh_lists"]


def _full_lists(shape, value):
    """Nested lists of the given shape, every element `value` (rows shared, not copied)."""
    data = value
    for n in reversed(shape):
        data = [data] * n
    return data


def _flat(x, ndim):
    """The elements of nested list x, in row-major order, as one flat list."""
    if ndim == 0:
        return [x]
    for _ in range(ndim - 1):
        x = list(itertools.chain.from_iterable(x))
    return x


def _fold(flat, shape):
    """The inverse of _flat: fold a flat list of floats into nested lists of `shape`."""
    if not shape:
        return flat[0]
    if 0 in shape:
        return _full_lists(shape, 0.0)
    for n in reversed(shape[1:]):
        flat = [flat[i:i + n] for i in range(0, len(flat), n)]
    return flat


def _copy_lists(x, ndim):
    """A deep copy of nested list x, with no shared rows."""
    if ndim == 0:
        return x
    if ndim == 1:
        return list(x)
    return [_copy_lists(row, ndim - 1) for row in x]


def _broadcast_shapes(op, *shapes):
    """The shape NumPy broadcasting gives: shapes align on the right (missing sides count as
    1); on each axis the sides must agree, except that a side of 1 stretches."""
    ndim = _max(map(len, shapes))
    result = []
    for axis in range(-ndim, 0):
        side = 1
        for shape in shapes:
            n = shape[axis] if len(shape) >= -axis else 1
            if n != 1 and n != side:
                if side != 1:
                    raise ValueError(f"{op}: shapes {' and '.join(map(str, shapes))} "
                                     f"cannot be broadcast together")
                side = n
        result.append(side)
    return tuple(result)


def broadcast_lists(x, shape, new_shape):
    """Repeat nested list x of `shape` into `new_shape` (shapes checked by the caller).

    A repeated axis repeats the same inner list object rather than a copy: broadcasting a
    row across 1000 rows costs 1000 references.

    >>> broadcast_lists([1.0, 2.0], (2,), (2, 2))
    [[1.0, 2.0], [1.0, 2.0]]
    """
    lead = len(new_shape) - len(shape)
    for _ in range(lead):
        x = [x]
    return _expand(x, (1,) * lead + shape, new_shape)


def _expand(x, shape, new_shape):
    if shape == new_shape:
        return x
    if len(shape) == 1:  # [v] -> [v, v, ..., v]
        return x * new_shape[0]
    if shape[0] == new_shape[0]:
        return [_expand(child, shape[1:], new_shape[1:]) for child in x]
    return [_expand(x[0], shape[1:], new_shape[1:])] * new_shape[0]


def elementwise(fn, operands, ndim, safe=None):
    """Apply the scalar function fn across equally shaped nested lists, element by element.

    fn runs at C speed through map. If it raises on an IEEE special case (1/0, log(0),
    exp(1000)), `safe`, its IEEE-safe version, does the work again.

    >>> elementwise(operator.add, ([[1.0, 2.0]], [[10.0, 20.0]]), 2)
    [[11.0, 22.0]]
    >>> elementwise(operator.truediv, ([1.0, 0.0], [0.0, 0.0]), 1, safe=_div)
    [inf, nan]
    """
    try:
        if ndim == 0:
            return fn(*operands)
        if ndim == 1:
            return list(map(fn, *operands))
        if ndim == 2:  # the common case, in one comprehension rather than a call per row
            return [list(map(fn, *rows)) for rows in zip(*operands)]
        return [elementwise(fn, rows, ndim - 1) for rows in zip(*operands)]
    except (ArithmeticError, ValueError):  # ZeroDivisionError, OverflowError, domain errors
        if safe is None:
            raise
        return elementwise(safe, operands, ndim)


def rowwise(row_fn, operands, ndim):
    """Apply row_fn, which maps equally long rows of floats to a row, to each innermost row
    of equally shaped nested lists. A speed device, for rules best said as a comprehension
    (below): relu of a 256 x 256 tensor as a comprehension per row takes 1.7 ms, against
    3.0 ms for map with a Python function.

    >>> rowwise(lambda row: [v * v for v in row], ([[1.0, 2.0], [3.0, 4.0]],), 2)
    [[1.0, 4.0], [9.0, 16.0]]
    """
    if ndim == 0:
        return row_fn(*([v] for v in operands))[0]
    if ndim == 1:
        return row_fn(*operands)
    if ndim == 2:
        return [row_fn(*rows) for rows in zip(*operands)]
    return [rowwise(row_fn, rows, ndim - 1) for rows in zip(*operands)]


def _relu_rows(x):
    """max(v, 0) as PyTorch: relu(-0.0) = -0.0 and relu(nan) = nan."""
    return [0.0 if v < 0.0 else v for v in x]


def _relu_backward_rows(g, out):
    """g where relu's output is > 0, else 0 (selected, as PyTorch does: an inf in g does not
    become inf * 0 = nan)."""
    return [0.0 if y <= 0.0 else d for d, y in zip(g, out)]


def _maximum_rows(x, y):
    """The larger of each pair, nan if either is nan (numpy.maximum, which gives y on a tie)."""
    return [a if a > b or a != a else b for a, b in zip(x, y)]


def _minimum_rows(x, y):
    """The smaller of each pair, nan if either is nan (numpy.minimum)."""
    return [a if a < b or a != a else b for a, b in zip(x, y)]


def _signbit_rows(x):
    return [math.copysign(1.0, v) < 0.0 for v in x]


def _select_rows(condition, x, y):
    """x where condition is nonzero (nan counts as nonzero), else y."""
    return [a if c else b for c, a, b in zip(condition, x, y)]


# Comparisons give 1.0 or 0.0. One comprehension each, since calling operator.lt for every
# element would take twice as long.
def astype_lists(x, ndim, dtype):
    """Nested list x with every element converted to dtype "float64" (a float), "bool"
    (True where nonzero) or "complex128" (a complex number).

    >>> astype_lists([[0.0, 2.0]], 2, "bool")
    [[False, True]]
    """
    return elementwise({"float64": float, "complex128": complex}.get(dtype, bool), (x,), ndim)


def reduce_lists(x, shape, axes, fn, new_shape=None):
    """Reduce nested list x over the sorted `axes` with fn (a sequence of floats -> a float).

    fn gets the elements of each result in row-major order (as ravel lists them), over one
    axis, several or all: so the sum of each example of a batch, reduced over every axis but
    the batch's (as vmap does), adds as the sum of that example alone. The reduced axes are
    removed from the result, or kept as sides of 1 when new_shape, the result's shape, says
    so (keepdims). With no axes, each element is reduced on its own, as NumPy does: the
    sum of -0.0 over axis=() is 0.0, as over any other axis.

    >>> reduce_lists([[1.0, 2.0], [3.0, 4.0]], (2, 2), (0,), _sum_of)
    [4.0, 6.0]
    """
    ndim = len(shape)
    if 1 < len(axes) < ndim and 0 not in shape:  # the reduced axes moved last, as one
        kept = tuple(a for a in range(ndim) if a not in axes)
        moved = tuple(shape[a] for a in kept + tuple(axes))
        merged = moved[:len(kept)] + (math.prod(moved[len(kept):]),)
        x = reshape_lists(transpose_lists(x, shape, kept + tuple(axes)), moved, merged)
        x = _reduce_axis(x, merged, len(kept), fn)
        return x if new_shape is None or len(new_shape) < ndim else \
            reshape_lists(x, merged[:-1], new_shape)
    if len(axes) == ndim:
        x = fn(_flat(x, ndim))
    elif not axes:
        x = elementwise(lambda v: fn((v,)), (x,), ndim)
    for axis in reversed(axes if len(axes) < ndim else ()):  # the last axis first, so the
        x = _reduce_axis(x, shape, axis, fn)                   # others keep their numbers
        shape = shape[:axis] + shape[axis + 1:]
    if new_shape is not None and len(new_shape) == ndim and axes:  # keepdims
        x = reshape_lists(x, tuple(n for i, n in enumerate(new_shape) if i not in axes),
                          new_shape)
    return x


def _reduce_axis(x, shape, axis, fn):
    if axis == len(shape) - 1:  # the innermost axis: fn of each row
        return elementwise(fn, (x,), axis)  # one level short: each "element" is a row
    if axis > 0:
        return [_reduce_axis(child, shape[1:], axis - 1, fn) for child in x]
    if shape[0] == 0:
        return _full_lists(shape[1:], fn(()))  # e.g. the sum over an empty axis is 0
    return _reduce_across(x, len(shape) - 1, fn)


def _reduce_across(group, depth, fn):
    """Reduce a list of equally shaped subtrees into one, elementwise: zip pairs them up."""
    if depth == 1:
        return list(map(fn, zip(*group)))
    return [_reduce_across(column, depth - 1, fn) for column in zip(*group)]


def logsumexp_lists(x, shape, axes, new_shape):
    """log(sum(exp(x))) over the sorted `axes`, the reduced axes as new_shape has them, as
    this formula, step by step: with m the largest element along the axes (0 where m is
    infinite, or where there are none), log(sum(exp(x - m))) + m.

    >>> logsumexp_lists([1000.0, 1000.0], (2,), (0,), ())
    1000.6931471805599
    """
    kept = _kept_shape(shape, axes)
    if 0 in (shape[a] for a in axes):
        shift = _full_lists(kept, 0.0)
    else:
        shift = reduce_lists(x, shape, axes, _max_of, kept)
        shift = elementwise(lambda m: 0.0 if _abs(m) == inf else m, (shift,), len(kept))
    shifted = _SUB((x, broadcast_lists(shift, kept, shape)), len(shape))
    total = reduce_lists(_EXP((shifted,), len(shape)), shape, axes, _sum_of, kept)
    value = _ADD((_LOG((total,), len(kept)), shift), len(kept))
    return reshape_lists(value, kept, new_shape)


def matmul_lists(x, y, shape, k):
    """x @ y for nested lists of >= 2 axes whose leading (batch) axes are equal; `shape` is
    the result's and k the inner side.

    >>> matmul_lists([[1.0, 2.0]], [[3.0], [4.0]], (1, 1), 2)
    [[11.0]]
    """
    if k == 0:  # every dot product is empty, so every element is 0.0
        return _full_lists(shape, 0.0)
    if len(shape) > 2:
        return [matmul_lists(a, b, shape[1:], k) for a, b in zip(x, y)]
    if len(y) <= 2 and len(y[0]) >= 4 * len(y):
        # A speed device. An inner side of 1 or 2 (a layer fed with 2-D points, say) makes each
        # dot product mostly call overhead: adding up scaled rows of y does the same sums at
        # C speed: the (100, 2) @ (2, 16) of examples/benchmark.py's W3a takes 220
        # microseconds instead of 350.
        return [_scaled_rows_sum(row, y) for row in x]
    columns = list(zip(*y))
    times = operator.mul  # a local name: looked up once, not once per element
    return [[_sum(map(times, row, column)) for column in columns] for row in x]


def complex_scatter_lists(g, index, shape):
    """scatter_lists of complex g: its zeros are 0j."""
    return astype_lists(scatter_lists(g, index, shape), len(shape), "complex128")


def complex_take_backward_lists(g, indices, indices_shape, shape, axis):
    """take_backward_lists of complex g: its zeros are 0j."""
    return astype_lists(take_backward_lists(g, indices, indices_shape, shape, axis),
                        len(shape), "complex128")


def complex_matmul_lists(x, y, shape, k):
    """matmul_lists for complex numbers: the same, but 0j where the inner side is 0."""
    return _full_lists(shape, 0j) if k == 0 else matmul_lists(x, y, shape, k)


def _scaled_rows_sum(coefficients, rows):
    """coefficients[0] * rows[0] + coefficients[1] * rows[1] + ..., elementwise.

    _sum() in the other path starts from +0.0, as NumPy's matmul does, so its result is never
    -0.0; here a lone -0.0 * 1.0 would stay -0.0. Adding 0.0 turns -0.0 into 0.0 and leaves
    every other value as it is; it runs only when the result holds a zero, since looking
    for one (`in`, at C speed) costs less than half as much as the addition.
    """
    total = list(map(operator.mul, rows[0], itertools.repeat(coefficients[0])))
    if len(rows) > 1:  # (an outer product has one: vmap(grad) of W3a, -4.6% instructions)
        for c, row in zip(coefficients[1:], rows[1:]):
            total = list(map(operator.add, total, map(operator.mul, row, itertools.repeat(c))))
    if 0.0 in total:  # == finds -0.0 too
        total = list(map(operator.add, total, itertools.repeat(0.0)))
    return total


def reshape_lists(x, shape, new_shape):
    """The elements of nested list x of `shape`, in row-major order, folded into new_shape.

    >>> reshape_lists([[1.0, 2.0], [3.0, 4.0]], (2, 2), (4,))
    [1.0, 2.0, 3.0, 4.0]
    """
    return _fold(_flat(x, len(shape)), new_shape)


def transpose_lists(x, shape, axes):
    """Permute the axes of nested list x: axis i of the result is axis axes[i] of x.

    >>> transpose_lists([[1.0, 2.0, 3.0]], (1, 3), (1, 0))
    [[1.0], [2.0], [3.0]]
    """
    if axes == tuple(range(len(axes))):
        return x
    if 0 in shape:
        return _full_lists(tuple(shape[a] for a in axes), 0.0)
    if [a for a in axes if shape[a] != 1] == sorted(a for a in axes if shape[a] != 1):
        # Only sides of 1 move: the elements keep their order, so it is a reshape (a
        # batched vector's transpose, (100, 1, 16) -> (100, 16, 1): 4x faster).
        return _fold(_flat(x, len(shape)), tuple(shape[a] for a in axes))
    if len(axes) == 2:  # a matrix: zip(*x) at once, not two calls a row (W5: 137 -> 135 ms)
        return [list(column) for column in zip(*x)]
    front = axes[0]
    moved = _move_to_front(x, front)
    rest_shape = shape[:front] + shape[front + 1:]
    rest_axes = tuple(a - (a > front) for a in axes[1:])
    return [transpose_lists(child, rest_shape, rest_axes) for child in moved]


def _move_to_front(x, axis):
    """Make `axis` the leading axis, keeping the others in order. zip(*x) does it for axis 1."""
    if axis == 0:
        return x
    return [list(group) for group in zip(*[_move_to_front(child, axis - 1) for child in x])]


def index_lists(x, index):
    """x[index] for a tuple of in-range ints and slices, one per leading axis.

    >>> index_lists([[1.0, 2.0], [3.0, 4.0]], (slice(None), 1))
    [2.0, 4.0]
    """
    if not index:
        return x
    first, rest = index[0], index[1:]
    if isinstance(first, int):
        return index_lists(x[first], rest)
    if not rest:  # the last axis indexed: the slice of the list itself, not a call each
        return x[first]
    return [index_lists(child, rest) for child in x[first]]


def scatter_lists(g, index, shape):
    """Zeros of `shape` with g written at [index]: the adjoint of index_lists.

    >>> scatter_lists([2.0, 4.0], (slice(None), 1), (2, 2))
    [[0.0, 2.0], [0.0, 4.0]]
    """
    if not index:
        return g
    first, rest = index[0], index[1:]
    out = [_full_lists(shape[1:], 0.0)] * shape[0]
    if isinstance(first, int):
        out[first] = scatter_lists(g, rest, shape[1:])
    else:
        for position, child in zip(range(shape[0])[first], g):
            out[position] = scatter_lists(child, rest, shape[1:])
    return out


def one_hot_lists(labels, shape, new_shape):
    """Rows of zeros with a 1.0 at each label, in new_shape (shape + (classes,)). A label
    that is not an integer in [0, classes) is a ValueError, since this runs in programs too.

    >>> one_hot_lists([2.0, 0.0], (2,), (2, 3))
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    classes = new_shape[-1]
    flat = _flat(labels, len(shape))
    for position, label in enumerate(flat):
        if not (label.is_integer() and 0 <= label < classes):
            raise ValueError(f"one_hot: label {label} at flat position {position} is not an "
                             f"integer in [0, {classes})")
    rows = [[1.0 if i == label else 0.0 for i in range(classes)] for label in flat]
    return _fold(list(itertools.chain.from_iterable(rows)), new_shape)


def take_lists(x, indices, shape, index_shape, axis):
    """x[..., indices, ...] along `axis` (numpy.take): each index an integer in [-n, n),
    counted from the end if negative, else an IndexError.

    >>> take_lists([[1.0, 2.0], [3.0, 4.0]], [1.0, 0.0], (2, 2), (2,), 1)
    [[2.0, 1.0], [4.0, 3.0]]
    """
    n = shape[axis]
    picks = _flat(checked_indices_lists(indices, index_shape, n), len(index_shape))
    flat = _flat(x, len(shape))
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    out = [flat[(o * n + int(i)) * inner + k]
           for o in range(outer) for i in picks for k in range(inner)]
    return _fold(out, shape[:axis] + tuple(index_shape) + shape[axis + 1:])


def take_backward_lists(g, indices, index_shape, shape, axis):
    """Zeros of `shape` with g added where take_lists read (a repeated index adds up)."""
    n = shape[axis]
    picks = _flat(checked_indices_lists(indices, index_shape, n), len(index_shape))
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    values = _flat(g, axis + len(index_shape) + len(shape) - axis - 1)
    out = [0.0] * math.prod(shape)
    position = 0
    for o in range(outer):
        for i in picks:
            start = (o * n + int(i)) * inner
            for k in range(inner):
                out[start + k] += values[position]
                position += 1
    return _fold(out, shape)


def checked_indices_lists(indices, shape, n):
    """Indices along a side of n as non-negative floats; one that is not an integer in
    [-n, n) is an IndexError."""
    flat = _flat(indices, len(shape))
    for position, i in enumerate(flat):
        if not (i == i and float(i).is_integer() and -n <= i < n):
            raise IndexError(f"index {_text(i)} at flat position {position} is out of bounds "
                             f"for an axis of size {n}")
    return _fold([i + n if i < 0 else i + 0.0 for i in flat], shape)


def im2col_lists(x, shape, kernel, stride, padding, dilation, fill):
    """The windows of nested list x of shape (N, C, H, W) as rows of patches: shape
    (N, OH * OW, C * kh * kw), each row in (channel, i, j) order; `fill` outside x.

    Each (channel, i, j) column is cut from whole rows with one slice per output row, and
    zip(*columns) turns the columns into rows at C speed.

    >>> im2col_lists([[[[1.0, 2.0], [3.0, 4.0]]]], (1, 1, 2, 2), (2, 1), (1, 1), (0, 0),
    ...              (1, 1), 0.0)
    [[[1.0, 3.0], [2.0, 4.0]]]
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    height, width = shape[2] + 2 * ph, shape[3] + 2 * pw
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    result = []
    for image in x:
        columns = []
        for channel in image:
            if ph or pw:
                edge = [fill] * width
                channel = [edge] * ph + [[fill] * pw + row + [fill] * pw
                                         for row in channel] + [edge] * ph
            for i in range(kh):
                rows = [channel[oh * sh + i * dh] for oh in range(out_h)]
                for j in range(kw):
                    start, stop = j * dw, j * dw + (out_w - 1) * sw + 1
                    columns.append([v for row in rows for v in row[start:stop:sw]])
        result.append([list(patch) for patch in zip(*columns)] if columns else
                      [[] for _ in range(out_h * out_w)])
    return result


def col2im_lists(g, shape, kernel, stride, padding, dilation):
    """The adjoint of im2col_lists: zeros of `shape` (N, C, H, W) with each element of the
    patches g added back at the place it was read from (windows that overlap add up)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = shape
    height, width = h + 2 * ph, w + 2 * pw
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    result = []
    for patches in g:
        columns = list(zip(*patches)) if patches and patches[0] else []
        image, k = [], 0
        for _ in range(c):
            channel = [[0.0] * width for _ in range(height)]
            for i in range(kh):
                for j in range(kw):
                    column = columns[k]
                    k += 1
                    start, stop = j * dw, j * dw + (out_w - 1) * sw + 1
                    for oh in range(out_h):
                        row = channel[oh * sh + i * dh]
                        row[start:stop:sw] = map(operator.add, row[start:stop:sw],
                                                 column[oh * out_w:(oh + 1) * out_w])
            image.append([row[pw:pw + w] for row in channel[ph:ph + h]])
        result.append(image)
    return result if n else []


def cumsum_lists(x, shape, axis):
    """The running sums of nested list x along `axis`, each added to the last in order.

    >>> cumsum_lists([[1.0, 2.0], [3.0, 4.0]], (2, 2), 0)
    [[1.0, 2.0], [4.0, 6.0]]
    """
    return _accumulate_lists(x, shape, axis, operator.add)


def cumprod_lists(x, shape, axis):
    """The running products of nested list x along `axis`, multiplied in order.

    >>> cumprod_lists([2.0, 3.0, 4.0], (3,), 0)
    [2.0, 6.0, 24.0]
    """
    return _accumulate_lists(x, shape, axis, operator.mul)


def _accumulate_lists(x, shape, axis, fn):
    if axis == len(shape) - 1:  # rows: itertools.accumulate at C speed
        return elementwise(lambda row: list(itertools.accumulate(row, fn)), (x,), axis) \
            if axis else list(itertools.accumulate(x, fn))
    if axis > 0:
        return [_accumulate_lists(child, shape[1:], axis - 1, fn) for child in x]
    return list(itertools.accumulate(x, lambda total, row: elementwise(
        fn, (total, row), len(shape) - 1))) if x else x


def argsort_lists(x, shape, axis):
    """For each line of nested list x along `axis`, the positions that sort it: ascending,
    ties kept in order, nan last; as floats.

    >>> argsort_lists([3.0, 1.0, 2.0], (3,), 0)
    [1.0, 2.0, 0.0]
    """
    moved = _move_to_front(x, axis) if axis else x
    rest = shape[:axis] + shape[axis + 1:]
    lines = list(zip(*[_flat(part, len(rest)) for part in moved])) if moved else []
    order = [[float(i) for i in sorted(range(len(line)), key=lambda i, v=line: (
        v[i] != v[i], v[i]))] for line in lines]  # (is nan, value): nan sorts last
    columns = [list(c) for c in zip(*order)] if order else [[] for _ in range(shape[axis])]
    front = [_fold(c, rest) for c in columns]  # the sorted positions, axis in front
    order_axes = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, len(shape)))
    return transpose_lists(front, (shape[axis],) + rest, order_axes) if axis else front


def concatenate_lists(parts, axis):
    """Join nested lists along `axis` (shapes checked by the caller).

    >>> concatenate_lists([[[1.0]], [[2.0]]], 1)
    [[1.0, 2.0]]
    """
    if axis == 0:
        return list(itertools.chain.from_iterable(parts))
    return [concatenate_lists(group, axis - 1) for group in zip(*parts)]


# ---- Linear algebra (chapter 5f): each kernel maps a one-matrix function over the batch --

def _each_matrix(fn, data, shape, index=()):
    """fn(matrix, which) for each matrix (the last two axes) of nested lists of `shape`,
    nested as the batch axes; `which` names the matrix for an error message: "" for a lone
    matrix, " (matrix (1, 0) of the batch)" in a batch."""
    if len(shape) == 2:
        return fn(data, f" (matrix {index} of the batch)" if index else "")
    return [_each_matrix(fn, d, shape[1:], index + (i,)) for i, d in enumerate(data)]


def _lu(m):
    """Gaussian elimination with partial pivoting of a square matrix: (lu, order, sign), L
    below the diagonal (its ones implied) and U on and above it, of m's rows taken in
    `order`, an even (sign 1.0) or odd (-1.0) permutation; None if a pivot is exactly 0."""
    n = len(m)
    lu = [[v if type(v) is complex else float(v) for v in row] for row in m]
    order, sign = list(range(n)), 1.0
    for k in range(n):
        p = _max(range(k, n), key=lambda i: _abs(lu[i][k]))
        pivot = lu[p][k]
        if pivot == 0.0:
            return None
        if p != k:
            lu[k], lu[p], order[k], order[p], sign = lu[p], lu[k], order[p], order[k], -sign
        top = lu[k][k + 1:]
        for row in lu[k + 1:]:
            f = row[k] = row[k] / pivot
            if f:
                row[k + 1:] = [v - f * t for v, t in zip(row[k + 1:], top)]
    return lu, order, sign


def _lu_solve(lu, order, b):
    """x with m @ x = b (rows of b: n lists of k), from m's _lu."""
    n = len(lu)
    x = [list(b[i]) for i in order]
    for i in range(n):  # L y = b, L with ones on its diagonal
        row = lu[i]
        for j in range(i):
            if row[j]:
                x[i] = [v - row[j] * w for v, w in zip(x[i], x[j])]
    for i in reversed(range(n)):  # U x = y
        row = lu[i]
        for j in range(i + 1, n):
            if row[j]:
                x[i] = [v - row[j] * w for v, w in zip(x[i], x[j])]
        x[i] = [v / row[i] for v in x[i]]
    return x


def _factored(op, m, which):
    factors = _lu(m)
    if factors is None:
        raise LinAlgError(f"{op}: singular matrix{which}: elimination met a pivot of 0")
    return factors


def _unit_matrix(n):
    return [[float(i == j) for j in range(n)] for i in range(n)]


def inv_lists(a, shape):
    """The inverse of each matrix (numpy.linalg.inv); LinAlgError if one is singular.

    >>> inv_lists([[2.0, 0.0], [0.0, 4.0]], (2, 2))
    [[0.5, 0.0], [0.0, 0.25]]
    """
    return _each_matrix(lambda m, which: _lu_solve(
        *_factored("inv", m, which)[:2], _unit_matrix(len(m))), a, shape)


def solve_lists(a, b, a_shape, b_shape, index=()):
    """x with a @ x = b for each matrix of a and of b (equal batch axes; b's matrices are
    (n, k)); LinAlgError if a matrix of a is singular."""
    if len(a_shape) == 2:
        which = f" (matrix {index} of the batch)" if index else ""
        return _lu_solve(*_factored("solve", a, which)[:2], b)
    return [solve_lists(m, c, a_shape[1:], b_shape[1:], index + (i,))
            for i, (m, c) in enumerate(zip(a, b))]


def _det_of(m):
    factors = _lu(m)
    if factors is None:
        return 0j if m and type(m[0][0]) is complex else 0.0
    lu, _, sign = factors
    return sign * math.prod(lu[i][i] for i in range(len(m)))


def det_lists(a, shape):
    """The determinant of each matrix (0.0 for a singular one), as nested lists of the batch
    axes' shape (a float for one matrix).

    >>> det_lists([[1.0, 2.0], [3.0, 4.0]], (2, 2))
    -2.0
    """
    return _each_matrix(lambda m, which: _det_of(m), a, shape)


def _slogdet_of(m):
    is_complex = bool(m) and type(m[0][0]) is complex
    factors = _lu(m)
    if factors is None:
        return 0j if is_complex else 0.0, -inf
    lu, _, sign = factors
    pivots = [lu[i][i] for i in range(len(m))]
    if is_complex:  # the product of the pivots' phases (NumPy's: each pivot / |pivot|)
        sign = complex(sign)
        for v in pivots:  # (none is 0: _lu stops there)
            sign = sign * (v / _abs(v))
        return sign, math.fsum(_log(_abs(v)) for v in pivots)
    for v in pivots:
        sign = sign if v > 0.0 else -sign if v < 0.0 else nan  # nan: a nan on the diagonal
    return sign, math.fsum(_log(_abs(v)) for v in pivots)


def sign_of_det_lists(a, shape):
    """The sign of each matrix's determinant: 1.0, -1.0, or 0.0 for a singular one; for a
    complex matrix, det / |det| (0j for a singular one)."""
    return _each_matrix(lambda m, which: _slogdet_of(m)[0], a, shape)


def logabsdet_lists(a, shape):
    """log |det| of each matrix, computed from the pivots (no overflow); -inf if singular."""
    return _each_matrix(lambda m, which: _slogdet_of(m)[1], a, shape)


def _cofactors_of(m):
    n = len(m)
    factors = _lu(m)
    if factors is not None:  # det(m) inv(m)^T, unless the inverse overflows (1 / 1e-309)
        lu, order, sign = factors
        d = sign * math.prod(lu[i][i] for i in range(n))
        inverse = _lu_solve(lu, order, _unit_matrix(n))
        cofactors = [[d * inverse[j][i] for j in range(n)] for i in range(n)]
        if all(cmath.isfinite(v) for row in cofactors for v in row) or not all(
                cmath.isfinite(v) for row in m for v in row):  # (cmath: complex too)
            return cofactors
    minor = lambda i, j: [row[:j] + row[j + 1:] for k, row in enumerate(m) if k != i]  # noqa
    return [[(-1.0) ** (i + j) * _det_of(minor(i, j)) for j in range(n)] for i in range(n)]


def cofactors_lists(a, shape):
    """The cofactor matrix of each matrix: det(m) inv(m)^T, or from the minors' determinants
    where m is singular (where that formula has no inverse to use) or its inverse overflows."""
    return _each_matrix(lambda m, which: _cofactors_of(m), a, shape)


def _cholesky_of(m, which):
    n = len(m)
    if n and type(m[0][0]) is complex:
        return _hermitian_cholesky_of(m, which)
    low = [[0.0] * n for _ in range(n)]
    for j in range(n):
        s = m[j][j] - math.fsum(v * v for v in low[j][:j])
        if not s > 0.0:  # also a nan
            raise _not_positive_definite(which, j, s)
        low[j][j] = d = math.sqrt(s)
        for i in range(j + 1, n):
            low[i][j] = (m[i][j] - math.fsum(map(operator.mul, low[i][:j], low[j][:j]))) / d
    return low


def _hermitian_cholesky_of(m, which):
    """The complex case: L L^H = m, from m's lower triangle and the real parts of its
    diagonal (as LAPACK's zpotrf); L's diagonal is real, held as complex numbers."""
    n = len(m)
    low = [[0j] * n for _ in range(n)]
    for j in range(n):
        s = m[j][j].real - math.fsum(v.real * v.real + v.imag * v.imag for v in low[j][:j])
        if not s > 0.0:  # also a nan
            raise _not_positive_definite(which, j, s)
        d = math.sqrt(s)
        low[j][j] = complex(d)
        for i in range(j + 1, n):
            products = [x * y.conjugate() for x, y in zip(low[i][:j], low[j][:j])]
            total = complex(math.fsum(p.real for p in products),
                            math.fsum(p.imag for p in products))
            low[i][j] = (m[i][j] - total) / d
    return low


def _not_positive_definite(which, j, pivot):
    return LinAlgError(f"cholesky: matrix{which} is not positive definite (pivot {j} is "
                       f"{pivot})")


def cholesky_lists(a, shape):
    """The lower Cholesky factor of each matrix, from its lower triangle (L L^H = a for a
    complex one, whose diagonal's real part is read); LinAlgError if a matrix is not
    positive definite.

    >>> cholesky_lists([[4.0, 2.0], [2.0, 5.0]], (2, 2))
    [[2.0, 0.0], [1.0, 2.0]]
    """
    return _each_matrix(_cholesky_of, a, shape)


def _jacobi(s):
    """The eigenvalues and eigenvectors (columns) of a symmetric matrix, by Jacobi's cyclic
    iteration: each rotation zeroes one off-diagonal pair, and sweeps repeat until none is
    left. From the fourth sweep on, an entry too small to change either diagonal entry it
    pairs is set to 0 (Numerical Recipes' rule), which ends the iteration in a few sweeps.
    A Hermitian matrix (complex off the diagonal, real on it) is done the same way, with a
    phase on column q before each rotation that makes the pair real (_make_real)."""
    n = len(s)
    a, v = [row[:] for row in s], _unit_matrix(n)
    for sweep in range(64):
        if not any(a[p][q] for p in range(n) for q in range(p + 1, n)):
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = a[p][q]
                if not apq:
                    continue
                app, aqq, big = a[p][p], a[q][q], 100.0 * _abs(apq)
                if sweep > 3 and _abs(app) + big == _abs(app) and _abs(aqq) + big == _abs(aqq):
                    a[p][q] = a[q][p] = 0.0
                    continue
                if type(apq) is complex:
                    apq = _make_real(a, v, p, q)
                h = aqq - app
                if _abs(h) + big == _abs(h):
                    t = apq / h
                else:
                    theta = 0.5 * h / apq
                    t = math.copysign(1.0 / (_abs(theta) + math.sqrt(1.0 + theta * theta)),
                                      theta)
                cos = 1.0 / math.sqrt(1.0 + t * t)
                sin = t * cos
                for rows in (a, v):  # columns p and q: A J, V J
                    for row in rows:
                        rp, rq = row[p], row[q]
                        row[p], row[q] = cos * rp - sin * rq, sin * rp + cos * rq
                a[p], a[q] = ([cos * x - sin * y for x, y in zip(a[p], a[q])],  # J^T A
                              [sin * x + cos * y for x, y in zip(a[p], a[q])])
                a[p][q] = a[q][p] = 0.0
    return [a[i][i] for i in range(n)], v


def _make_real(a, v, p, q):
    """The unitary step of a Hermitian Jacobi rotation: column q of a and v times u =
    conj(a[p][q]) / |a[p][q]|, row q of a times conj(u), which leaves a[p][q] = a[q][p] =
    |a[p][q]| (returned) and the diagonal as it was, for the real rotation to zero."""
    size, aqq = _abs(a[p][q]), a[q][q]
    u = a[p][q].conjugate() / size
    for rows in (a, v):
        for row in rows:
            row[q] *= u
    a[q] = [x * u.conjugate() for x in a[q]]
    a[p][q] = a[q][p] = size
    a[q][q] = aqq
    return size


def _eigh_of(m, uplo):
    """Row 0: the eigenvalues, ascending; rows 1..n: the eigenvectors as columns, each with
    its (first) largest entry positive, or, for a Hermitian m (complex numbers throughout,
    the eigenvalues' imaginary parts 0), real and positive."""
    n = len(m)
    lower, hermitian = uplo == "L", bool(m) and type(m[0][0]) is complex
    if hermitian:  # the other triangle's conjugates, and the diagonal's real parts
        s = [[m[i][i].real if i == j else m[i][j] if (i > j) == lower else
              m[j][i].conjugate() for j in range(n)] for i in range(n)]
    else:
        s = [[float(m[i][j] if (i >= j) == lower else m[j][i]) for j in range(n)]
             for i in range(n)]
    if not all(cmath.isfinite(x) for row in s for x in row):
        return [[complex(nan, nan) if hermitian else nan] * n for _ in range(n + 1)]
    scale = _max([_abs(x) for row in s for x in row], default=0.0) or 1.0
    w, v = _jacobi([[x / scale for x in row] for row in s])  # scaled: no overflow inside
    w = [x * scale for x in w]
    order = sorted(range(n), key=lambda i: w[i])  # ascending, ties in place
    columns = []
    for i in order:
        column = [row[i] for row in v]
        biggest = _max(column, key=_abs)  # the first of equal magnitudes
        if hermitian:
            phase = biggest / _abs(biggest)  # (no column is 0: v is unitary)
            columns.append([complex(x) / phase for x in column])
        else:
            columns.append([-x for x in column] if biggest < 0.0 else column)
    values = [complex(w[i]) if hermitian else w[i] for i in order]
    return [values] + [list(row) for row in zip(*columns)]


def eigh_lists(a, shape, uplo):
    """For each symmetric matrix (read from its lower triangle, or upper for uplo "U"), its
    eigenvalues ascending in row 0 and its eigenvectors as the columns of rows 1..n: nested
    lists of shape batch + (n + 1, n). nan throughout for a matrix with an inf or nan."""
    return _each_matrix(lambda m, which: _eigh_of(m, uplo), a, shape)


# ---- General eigenproblems (rax.linalg.eig): complex Schur form by shifted QR ---------------
#
# A matrix is reduced to upper Hessenberg form by Householder reflections, then to upper
# triangular form T = Z^H A Z (its complex Schur form) by QR steps with Wilkinson's shift,
# each step a sweep of Givens rotations, deflating where a subdiagonal entry falls below
# rounding; the eigenvalues are T's diagonal. The eigenvectors of T come by back
# substitution, and Z takes them back to A's; each is scaled to unit length with its
# largest entry real and positive (LAPACK's zgeev: "largest component real").

def _hessenberg(a):
    """(H, Q): H upper Hessenberg with a = Q H Q^H, by Householder reflections."""
    n = len(a)
    h, q = [[complex(v) for v in row] for row in a], _unit_matrix(n)
    q = [[complex(v) for v in row] for row in q]
    for k in range(n - 2):
        x = [h[i][k] for i in range(k + 1, n)]
        size = math.sqrt(_sum(_abs(v) ** 2 for v in x))
        if size == 0.0:
            continue
        v = list(x)
        v[0] += (x[0] / _abs(x[0]) if x[0] else 1.0) * size  # away from cancellation
        norm = math.sqrt(_sum(_abs(c) ** 2 for c in v))
        v = [c / norm for c in v]
        for j in range(n):  # H <- (I - 2 v v^H) H on rows k+1..
            s = 2.0 * _sum(v[i].conjugate() * h[k + 1 + i][j] for i in range(n - k - 1))
            for i in range(n - k - 1):
                h[k + 1 + i][j] -= v[i] * s
        for m in (h, q):  # H <- H (I - 2 v v^H), Q <- Q (I - 2 v v^H) on columns k+1..
            for row in m:
                s = 2.0 * _sum(row[k + 1 + i] * v[i] for i in range(n - k - 1))
                for i in range(n - k - 1):
                    row[k + 1 + i] -= s * v[i].conjugate()
    return h, q


def _givens(x, y):
    """(c, s) of the rotation [[c, s], [-conj(s), c]] (c real) that zeroes y under x."""
    r = math.hypot(_abs(x), _abs(y))
    if r == 0.0:
        return 1.0, 0j
    c = _abs(x) / r
    phase = x / _abs(x) if x else 1.0
    return c, phase * y.conjugate() / r


def _schur(a):
    """(T, Z): the complex Schur form T = Z^H a Z (T upper triangular, Z unitary)."""
    h, z = _hessenberg(a)
    n = len(h)
    eps, hi, stuck = sys.float_info.epsilon, n - 1, 0
    scale = _max((_abs(v) for row in h for v in row), default=0.0)
    while hi > 0:
        lo = hi
        while lo > 0 and _abs(h[lo][lo - 1]) > eps * (_abs(h[lo][lo]) + _abs(h[lo - 1][lo - 1])
                                                      or scale):
            lo -= 1
        if lo == hi:  # h[hi][hi] has split off: an eigenvalue
            if hi > 0:
                h[hi][hi - 1] = 0j
            hi, stuck = hi - 1, 0
            continue
        if lo > 0:
            h[lo][lo - 1] = 0j
        stuck += 1
        if stuck > 30 * n:
            raise LinAlgError("eig: the QR iteration did not converge")
        shift = _wilkinson(h, hi) if stuck % 11 else h[hi][hi] + _abs(h[hi][hi - 1])
        _shifted_sweep(h, z, lo, hi, shift)
    return h, z


def _wilkinson(h, hi):
    """The eigenvalue of the trailing 2x2 block nearer its last diagonal entry."""
    a, b, c, d = h[hi - 1][hi - 1], h[hi - 1][hi], h[hi][hi - 1], h[hi][hi]
    half, det = (a + d) / 2.0, a * d - b * c
    root = cmath.sqrt(half * half - det)
    one, two = half + root, half - root
    return one if _abs(one - d) <= _abs(two - d) else two


def _shifted_sweep(h, z, lo, hi, shift):
    """H - shift I = QR on rows and columns lo..hi (Givens rotations), then RQ + shift I,
    applied to the whole of H (rows to the right, columns above) and to Z."""
    n = len(h)
    for k in range(lo, hi + 1):
        h[k][k] -= shift
    rotations = []
    for k in range(lo, hi):  # R = G_{hi-1} ... G_lo (H - shift I)
        c, s = _givens(h[k][k], h[k + 1][k])
        rotations.append((c, s))
        for j in range(k, n):
            x, y = h[k][j], h[k + 1][j]
            h[k][j], h[k + 1][j] = c * x + s * y, -s.conjugate() * x + c * y
    for k, (c, s) in zip(range(lo, hi), rotations):  # R Q: columns k, k+1 by G^H
        for m, rows in ((h, range(0, _min(k + 2, hi) + 1)), (z, range(n))):
            for i in rows:
                x, y = m[i][k], m[i][k + 1]
                m[i][k], m[i][k + 1] = c * x + s.conjugate() * y, -s * x + c * y
    for k in range(lo, hi + 1):
        h[k][k] += shift


def _eig_of(m):
    """Row 0: the eigenvalues of m (complex); rows 1..n: its eigenvectors as columns."""
    n = len(m)
    if not all(cmath.isfinite(v) for row in m for v in row):
        return [[complex(nan, nan)] * n for _ in range(n + 1)]
    t, z = _schur(m)
    values = [t[k][k] for k in range(n)]
    smallest = sys.float_info.epsilon * _max((_abs(v) for row in t for v in row), default=1.0)
    vectors = []
    for k in range(n):  # (T - w_k I) y = 0 with y_k = 1, y_j = 0 below
        y = [0j] * n
        y[k] = 1.0 + 0j
        for j in range(k - 1, -1, -1):
            d = t[j][j] - values[k]
            d = d if _abs(d) > smallest else (smallest or 1e-300)
            y[j] = -_sum(t[j][l] * y[l] for l in range(j + 1, k + 1)) / d
        x = [_sum(z[i][l] * y[l] for l in range(k + 1)) for i in range(n)]
        big = _max(x, key=_abs)
        size = math.sqrt(_sum(_abs(v) ** 2 for v in x))
        phase = big / _abs(big) if big else 1.0
        vectors.append([v / phase / size for v in x])
    if not any(v.imag for row in m for v in row):  # a real matrix: real or conjugate pairs
        values, vectors = _as_conjugate_pairs(values, vectors, 100.0 * n * smallest)
    return [values] + [[vectors[k][i] for k in range(n)] for i in range(n)]


def _as_conjugate_pairs(values, vectors, tol):
    """For a real matrix, as LAPACK's dgeev gives them: an eigenvalue within rounding of
    the real axis real (its vector too), the others in exact conjugate pairs, the one with
    the positive imaginary part first, their vectors conjugates."""
    order, done = [], set()
    for k, w in enumerate(values):
        if k in done:
            continue
        done.add(k)
        if _abs(w.imag) <= tol:
            order.append((complex(w.real), [complex(v.real) for v in vectors[k]]))
            continue
        partner = _min((j for j in range(len(values)) if j not in done),
                       key=lambda j: _abs(values[j] - w.conjugate()), default=None)
        if partner is not None:
            done.add(partner)
        if w.imag < 0.0:
            w, vector = w.conjugate(), [v.conjugate() for v in vectors[k]]
        else:
            vector = vectors[k]
        order += [(w, vector), (w.conjugate(), [v.conjugate() for v in vector])]
    return [w for w, _ in order], [vector for _, vector in order]


def eig_lists(a, shape):
    """For each square matrix, its eigenvalues in row 0 and its eigenvectors as the columns
    of rows 1..n, complex numbers: nested lists of shape batch + (n + 1, n)."""
    return _each_matrix(lambda m, which: _eig_of(m), a, shape)


# ---- The discrete Fourier transform (rax.fft, chapter 5i) -----------------------------------
#
# One lane (_fft_1d), then along axes as numpy.fft does.
# _fft_1d is O(n log n) for every n: a radix-2 transform for powers of two, and Bluestein's
# chirp-z for other lengths, which turns a length-n DFT into a circular convolution of a
# power-of-two length m >= 2n - 1, done with three radix-2 transforms (one of them cached).
# Twiddle factors come from math.cos and math.sin of exact angles reduced to the first
# octant, never from repeated multiplication, so the error stays near that of numpy's
# pocketfft (about 1e-16 * log2(n) relative to the largest output).

# Twiddles and Bluestein plans by (kind, n, inverse). Measured, one transform with the cache
# empty and then full: n = 4096, 3.0 -> 2.0 ms; n = 4093 (Bluestein, whose plan holds the
# transform of the chirp filter and two tables of m = 8192), 18.7 -> 9.1 ms.
_FFT_CACHE = {}
_FFT_CACHE_SIZE = 32  # a few lengths in each direction; the oldest entry goes first
_FFT_CACHE_LOCK = threading.Lock()  # eviction by two threads at once must not collide


def _fft_cached(key, make):
    """The cached value for key, made by make() and stored on the first call."""
    value = _FFT_CACHE.get(key)
    if value is None:
        value = make()
        with _FFT_CACHE_LOCK:
            if len(_FFT_CACHE) >= _FFT_CACHE_SIZE:
                del _FFT_CACHE[next(iter(_FFT_CACHE))]
            _FFT_CACHE[key] = value
    return value


def _unit_root(k, n, sign):
    """exp(sign 2 pi i k / n) for ints 0 <= k < n, from cos and sin of an angle of at most
    pi / 4, so that the quarter turns are exact (math.cos(pi / 2) is 6e-17, not 0)."""
    quadrant, r = divmod(4 * k, n)  # angle = (quadrant + r / n) quarter turns
    if 2 * r <= n:
        angle = math.pi * r / (2 * n)
        c, s = math.cos(angle), math.sin(angle)
    else:  # past the eighth turn: the complement's sine and cosine
        angle = math.pi * (n - r) / (2 * n)
        c, s = math.sin(angle), math.cos(angle)
    c, s = ((c, s), (-s, c), (-c, -s), (s, -c))[quadrant]
    return complex(c, sign * s)


def _twiddles(n, inverse):
    """exp(-+2 pi i k / n) for k in range(n // 2): the twiddle factors of a radix-2 FFT."""
    sign = 1.0 if inverse else -1.0
    return [_unit_root(k, n, sign) for k in range(n // 2)]


def _fft_pow2(values, table):
    """The DFT of a list whose length n is a power of two >= 2, by the Stockham radix-2
    algorithm; table[k] = exp(-+2 pi i k / n) picks the direction."""
    n = len(values)
    half = n // 2
    add, sub, mul = operator.add, operator.sub, operator.mul
    f = values
    rows = 1
    # f is a rows x (n // rows) matrix, row-major: row k column c holds the k-th DFT
    # coefficient of the subsequence values[c::n // rows]. Each pass doubles the rows:
    # splitting the columns in halves E | O gives rows k and k + rows of E + w^k O, E - w^k O.
    # The loop in Python runs over the shorter side, a comprehension over the longer, so
    # the interpreter does at most sqrt(n) iterations per pass, not n / 2.
    while rows < n:
        cols = n // (2 * rows)  # columns after this pass
        tw = table[::cols]  # `rows` factors: exp(-+i pi k / rows)
        g = [0j] * n
        if rows <= cols:  # few long rows: one pass over a row at a time
            for k in range(rows):
                base = 2 * cols * k
                even = f[base:base + cols]
                odd = f[base + cols:base + 2 * cols]
                t = odd if k == 0 else list(map(tw[k].__mul__, odd))  # w^0 = 1 exactly
                g[k * cols:(k + 1) * cols] = map(add, even, t)
                g[half + k * cols:half + (k + 1) * cols] = map(sub, even, t)
        else:  # many short rows: one pass over a column at a time
            step = 2 * cols
            for c in range(cols):
                even = f[c::step]
                t = list(map(mul, tw, f[c + cols::step]))
                g[c:half:cols] = map(add, even, t)
                g[half + c::cols] = map(sub, even, t)
        f = g
        rows *= 2
    return f


def _bluestein_plan(n, inverse):
    """(m, chirp, filter) for Bluestein's algorithm at length n: chirp[k] = exp(-+i pi k^2 / n)
    and filter the length-m DFT of the conjugate chirp, divided by m."""
    m = 1 << (2 * n - 2).bit_length()  # the smallest power of two >= 2n - 1
    sign = 1.0 if inverse else -1.0
    # exp(i pi k^2 / n) = exp(2 pi i (k^2 mod 2n) / 2n): the angle of k = 4000 unreduced
    # would be ~1e4 rad, and its rounding error (1e-12) would pass into every output
    chirp = [_unit_root(k * k % (2 * n), 2 * n, sign) for k in range(n)]
    conj = [c.conjugate() for c in chirp]
    # circular convolution with conj[|j|] for j in (-n, n): negative j wrap to the end
    b = conj + [0j] * (m - 2 * n + 1) + conj[:0:-1]
    spectrum = _fft_pow2(b, _fft_cached(("twiddles", m, False), lambda: _twiddles(m, False)))
    return m, chirp, [z / m for z in spectrum]


def _fft_1d(values, inverse):
    """The unnormalized DFT of a list of n >= 1 complex numbers: sum_j x[j] exp(-+2 pi i jk/n),
    with sign - forward and + inverse (no 1/n). O(n log n) for every n."""
    n = len(values)
    if n == 1:
        return list(values)
    if n & (n - 1) == 0:
        return _fft_pow2(values, _fft_cached(("twiddles", n, inverse),
                                             lambda: _twiddles(n, inverse)))
    m, chirp, spectrum = _fft_cached(("bluestein", n, inverse),
                                     lambda: _bluestein_plan(n, inverse))
    # jk = (j^2 + k^2 - (k - j)^2) / 2 turns the DFT into chirp * ((x * chirp) conv conj)
    a = list(map(operator.mul, values, chirp))
    a += [0j] * (m - n)
    forward = _fft_cached(("twiddles", m, False), lambda: _twiddles(m, False))
    backward = _fft_cached(("twiddles", m, True), lambda: _twiddles(m, True))
    product = list(map(operator.mul, _fft_pow2(a, forward), spectrum))
    return list(map(operator.mul, chirp, _fft_pow2(product, backward)[:n]))


_FFT_NORMS = ("backward", None, "ortho", "forward")


def _fft_scale(op, norm, n, inverse):
    """The factor numpy.fft applies to a transform of n points in this direction."""
    if norm not in _FFT_NORMS:
        raise ValueError(f'{op}: invalid norm value {norm!r}; should be "backward", "ortho" '
                         f'or "forward" (or None)')
    if norm == "ortho":
        return 1.0 / math.sqrt(n)
    # "backward" scales the inverse by 1/n, "forward" the forward transform
    return 1.0 / n if (norm == "forward") != inverse else 1.0


def _scaled(values, factor):
    """values times a real factor, part by part: complex * float in Python before 3.14 makes
    a complex of the float, and inf * 0j would turn an exact zero part into nan."""
    if factor == 1.0:
        return values
    return [complex(z.real * factor, z.imag * factor) for z in values]


def _check_points(op, n):
    """n as the number of points of a transform: an int >= 1 (numpy's ValueError otherwise)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{op}: n must be an int, got {n!r} ({type(n).__name__})")
    if n < 1:
        raise ValueError(f"{op}: invalid number of FFT data points n={n}; need n >= 1")
    return operator.index(n)


def _resized(lane, n, fill):
    """lane cropped to its first n values, or padded with `fill` to length n."""
    return lane[:n] if len(lane) >= n else lane + [fill] * (n - len(lane))


def _map_lanes(data, shape, axis, n_out, fn):
    """(new data, new shape): fn applied to every 1-D lane of nested list data along axis,
    fn giving n_out values for each lane."""
    before = math.prod(shape[:axis])
    side = shape[axis]
    after = math.prod(shape[axis + 1:])
    new_shape = shape[:axis] + (n_out,) + shape[axis + 1:]
    if before * after == 0:  # no lanes: only the shape changes
        return _fold([], new_shape), new_shape
    # in the flat row-major list, a lane is a slice with step `after` (C speed, no transpose)
    flat = _flat(data, len(shape))
    out = [0j] * (before * n_out * after)
    for a in range(before):
        src = a * side * after
        dst = a * n_out * after
        for b in range(after):
            out[dst + b:dst + n_out * after:after] = fn(flat[src + b:src + side * after:after])
    return _fold(out, new_shape), new_shape


def _fft_along(op, data, shape, n, axis, norm, inverse):
    """fft_lists for the op named `op` (fft, ifft, fftn, ...), so that errors name it."""
    axis = _normalize_axis(op, axis, len(shape))
    n = _check_points(op, shape[axis] if n is None else n)
    factor = _fft_scale(op, norm, n, inverse)

    def lane(values):
        values = [complex(v) for v in _resized(values, n, 0j)]
        return _scaled(_fft_1d(values, inverse), factor)
    return _map_lanes(data, shape, axis, n, lane)


def _real_forward(op, data, shape, n, axis, norm, inverse):
    """rfft (inverse False) or ihfft (True): the first n // 2 + 1 values of the DFT of each
    real lane (the rest are their conjugates), cropped or zero-padded to n points first."""
    axis = _normalize_axis(op, axis, len(shape))
    n = _check_points(op, shape[axis] if n is None else n)
    factor = _fft_scale(op, norm, n, inverse)
    if any(type(v) is complex for v in _flat(data, len(shape))):
        raise TypeError(f"{op}: the input must be real, got complex numbers (numpy raises too)")

    def lane(values):
        values = [complex(v) for v in _resized(values, n, 0.0)]
        return _scaled(_fft_1d(values, inverse)[:n // 2 + 1], factor)
    return _map_lanes(data, shape, axis, n // 2 + 1, lane)


def _hermitian(op, data, shape, n, axis, norm, inverse):
    """irfft (inverse True) or hfft (False): the real n-point DFT of the Hermitian signal
    whose first n // 2 + 1 values are each lane (cropped or zero-padded)."""
    axis = _normalize_axis(op, axis, len(shape))
    n = _check_points(op, 2 * (shape[axis] - 1) if n is None else n)
    factor = _fft_scale(op, norm, n, inverse)
    half = n // 2 + 1

    def lane(values):
        x = [complex(v) for v in _resized(values, half, 0j)]
        # a Hermitian signal has real bins 0 and n / 2: read only their real parts, like
        # numpy (pocketfft's c2r). Finite imaginary parts there would reach only the dropped
        # imaginary part of the result, but an inf or nan would spread to every output.
        x[0] = complex(x[0].real)
        if n % 2 == 0:
            x[-1] = complex(x[-1].real)
        full = x + [z.conjugate() for z in x[(n - 1) // 2:0:-1]]  # bin n - k = conj(bin k)
        return [z.real * factor for z in _fft_1d(full, inverse)]
    return _map_lanes(data, shape, axis, n, lane)


def fft_lists(data, shape, n=None, axis=-1, norm=None, inverse=False):
    """numpy.fft.fft (numpy.fft.ifft if inverse) of nested list data of `shape` along axis,
    each lane cropped or zero-padded to n points (None: the axis length).

    Returns (new data, new shape); the new data holds Python complex numbers.

    >>> fft_lists([1.0, 2.0, 3.0, 4.0], (4,))
    ([(10+0j), (-2+2j), (-2+0j), (-2-2j)], (4,))
    """
    return _fft_along("ifft" if inverse else "fft", data, shape, n, axis, norm, inverse)


def rfft_lists(data, shape, n=None, axis=-1, norm=None):
    """numpy.fft.rfft: the n // 2 + 1 non-negative frequency terms of the DFT of real data
    along axis (n: the points, None for the axis length). Returns (new data, new shape)."""
    return _real_forward("rfft", data, shape, n, axis, norm, False)


def irfft_lists(data, shape, n=None, axis=-1, norm=None):
    """numpy.fft.irfft: the n real points (None: 2 (m - 1) for an axis of m) whose rfft is
    data along axis; imaginary parts of bins 0 and n / 2 are ignored, as numpy does."""
    return _hermitian("irfft", data, shape, n, axis, norm, True)


def hfft_lists(data, shape, n=None, axis=-1, norm=None):
    """numpy.fft.hfft: the n real points (None: 2 (m - 1)) of the DFT of a Hermitian
    signal given by its first half along axis. Returns (new data, new shape)."""
    return _hermitian("hfft", data, shape, n, axis, norm, False)


def ihfft_lists(data, shape, n=None, axis=-1, norm=None):
    """numpy.fft.ihfft: the n // 2 + 1 first terms of the inverse DFT of real data along
    axis (the inverse of hfft_lists). Returns (new data, new shape)."""
    return _real_forward("ihfft", data, shape, n, axis, norm, True)


def _nd_plan(op, shape, s, axes, real_inverse):
    """numpy's (sides, axes) of an n-dimensional transform: two lists of equal length, each
    side an int or None (the 1-D transform's default)."""
    ndim = len(shape)
    for name, value in (("s", s), ("axes", axes)):
        if value is not None and not isinstance(value, (list, tuple, range)):
            raise TypeError(f"{op}: {name} must be None or a sequence of ints, got {value!r}")
    if s is None:
        axes = list(range(ndim)) if axes is None else list(axes)
        sides = [shape[_normalize_axis(op, a, ndim)] for a in axes]
        if real_inverse and sides:  # irfftn's last axis: 2 (m - 1) points, as irfft's
            sides[-1] = 2 * (sides[-1] - 1)
        return sides, axes
    # numpy 2 deprecates s without axes, but still means the last len(s) axes by it
    axes = list(range(-len(s), 0)) if axes is None else list(axes)
    if len(s) != len(axes):
        raise ValueError(f"{op}: s and axes have different lengths ({len(s)} and {len(axes)})")
    # a side of -1 is the input's own side along that axis (numpy 2); None keeps the default
    sides = [shape[_normalize_axis(op, a, ndim)] if side == -1 else side
             for side, a in zip(s, axes)]
    return sides, axes


def fftn_lists(data, shape, s=None, axes=None, norm=None, inverse=False):
    """numpy.fft.fftn (ifftn if inverse): the DFT over `axes` (None: the last len(s) axes,
    or all), axis axes[i] cropped or zero-padded to s[i] points. Returns (data, shape)."""
    op = "ifftn" if inverse else "fftn"
    _fft_scale(op, norm, 1, inverse)  # a bad norm is an error even when there are no axes
    sides, axes = _nd_plan(op, shape, s, axes, False)
    # numpy goes from the last axis to the first; it matters only when an axis repeats
    for side, axis in reversed(list(zip(sides, axes))):
        data, shape = _fft_along(op, data, shape, side, axis, norm, inverse)
    return data, shape


def rfftn_lists(data, shape, s=None, axes=None, norm=None):
    """numpy.fft.rfftn: rfft over the last of `axes`, then the complex DFT over the others
    (axes and s as in fftn_lists). Returns (new data, new shape)."""
    sides, axes = _nd_plan("rfftn", shape, s, axes, False)
    if not axes:
        raise ValueError("rfftn: at least one axis is needed (numpy raises an IndexError)")
    data, shape = _real_forward("rfftn", data, shape, sides[-1], axes[-1], norm, False)
    for side, axis in reversed(list(zip(sides[:-1], axes[:-1]))):
        data, shape = _fft_along("rfftn", data, shape, side, axis, norm, False)
    return data, shape


def irfftn_lists(data, shape, s=None, axes=None, norm=None):
    """numpy.fft.irfftn: the inverse DFT over all of `axes` but the last, then irfft over the
    last, to s[-1] points (default 2 (m - 1) for its side m). Returns (data, shape)."""
    sides, axes = _nd_plan("irfftn", shape, s, axes, True)
    if not axes:
        raise ValueError("irfftn: at least one axis is needed (numpy raises an IndexError)")
    for side, axis in zip(sides[:-1], axes[:-1]):
        data, shape = _fft_along("irfftn", data, shape, side, axis, norm, True)
    return _hermitian("irfftn", data, shape, sides[-1], axes[-1], norm, True)


def _frequency_step(op, n, d):
    """1 / (n d), computed as numpy does, after checking n."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{op}: n should be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"{op}: n must be >= 0, got {n}")
    if n * d == 0:  # numpy's own 1.0 / (n * d) raises this too
        raise ZeroDivisionError(f"{op}: n * d is zero (n={n}, d={d!r})")
    return 1.0 / (n * d)


def fftfreq_lists(n, d=1.0):
    """numpy.fft.fftfreq: the sample frequencies [0, 1, ..., -(n // 2), ..., -1] / (n d) of
    an n-point DFT with sample spacing d, as a list of floats.

    >>> fftfreq_lists(4)
    [0.0, 0.25, -0.5, -0.25]
    """
    val = _frequency_step("fftfreq", n, d)
    # an int times 1 / (n d), as numpy does, so that values match it bit for bit
    ks = itertools.chain(range((n - 1) // 2 + 1), range(-(n // 2), 0))
    return [k * val for k in ks]


def rfftfreq_lists(n, d=1.0):
    """numpy.fft.rfftfreq: the sample frequencies [0, 1, ..., n // 2] / (n d) of rfft's
    output, as a list of floats.

    >>> rfftfreq_lists(4)
    [0.0, 0.25, 0.5]
    """
    val = _frequency_step("rfftfreq", n, d)
    return [k * val for k in range(n // 2 + 1)]


_FFT_KERNELS = {"fft": fft_lists, "ifft": functools.partial(fft_lists, inverse=True),
                "rfft": rfft_lists, "irfft": irfft_lists, "hfft": hfft_lists,
                "ihfft": ihfft_lists}


def fft_kernel_lists(x, shape, op, n, axis, norm):
    """The data of the 1-D transform `op` ("fft", "ifft", "rfft", "irfft", "hfft" or
    "ihfft") of nested list x of `shape` along axis, to n points: the kernel of rax.fft's
    primitives (chapter 5i)."""
    return _FFT_KERNELS[op](x, shape, n, axis, norm)[0]


# ============================================================================================
# Appendix B. IEEE-safe scalar math
#
# Why it exists: rax promises NumPy's answers (inf, nan) where Python raises: 1/0,
# math.log(0), math.exp(1000), 0.0 ** -1, math.sqrt(-1); and (-8.0) ** (1/3) is a complex
# number. exp, log, sqrt, sin, cos, div and pow with an integer exponent run the fast C
# function and redo the whole op with these safe versions only if it raises somewhere, so
# the common case pays nothing; sigmoid and the other pows always use them. The max, min
# and sum of a sequence (for the reductions) are here too: nan-aware, and a float for none.
# ============================================================================================

def _div(x, y):
    """x / y, where division by zero gives inf, -inf or nan (1/0, -1/0, 1/-0.0, 0/0)."""
    try:
        return x / y
    except ZeroDivisionError:
        if x == 0.0 or x != x:
            return nan
        return math.copysign(inf, x) * math.copysign(1.0, y)  # the sign of a zero counts


def _is_odd_integer(y):
    return y % 2.0 == 1.0


def _pow(x, y):
    """x ** y as numpy.power on floats: never an exception, never a complex number."""
    try:
        result = x ** y
    except ZeroDivisionError:  # 0.0 ** -1
        return math.copysign(inf, x) if _is_odd_integer(y) else inf
    except OverflowError:  # 10.0 ** 400, (-10.0) ** 401, (-10.0) ** 400.5
        if x < 0.0 and not y.is_integer():
            return nan
        return -inf if x < 0.0 and _is_odd_integer(y) else inf
    return nan if type(result) is complex else result  # (-8.0) ** (1/3)



def _overflow_to_inf(fn):
    """fn of one float, with inf where it overflows instead of OverflowError."""
    def safe(x):
        try:
            return fn(x)
        except OverflowError:
            return inf
    return safe


def _logarithm(fn):
    """A logarithm fn, with -inf at 0 and nan below instead of ValueError."""
    def safe(x):
        if x > 0.0:
            return fn(x)
        return -inf if x == 0.0 else nan
    return safe


_exp, _expm1, _cosh = (_overflow_to_inf(f) for f in (math.exp, math.expm1, math.cosh))
_exp2 = _overflow_to_inf(functools.partial(operator.pow, 2.0))  # 2 ** 2000 = inf
_log, _log2, _log10 = (_logarithm(f) for f in (math.log, math.log2, math.log10))


def _sqrt(x):
    """math.sqrt, with sqrt(-1) = nan instead of ValueError (sqrt(-0.0) stays -0.0)."""
    return math.sqrt(x) if x >= 0.0 else nan


def _sin(x):
    """math.sin, with sin(inf) = nan instead of ValueError."""
    return math.sin(x) if math.isfinite(x) else nan


def _cos(x):
    """math.cos, with cos(inf) = nan instead of ValueError."""
    return math.cos(x) if math.isfinite(x) else nan


def _tan(x):
    """math.tan, with tan(inf) = nan instead of ValueError."""
    return math.tan(x) if math.isfinite(x) else nan


def _sinh(x):
    """math.sinh, with sinh(+-1000) = +-inf instead of OverflowError."""
    try:
        return math.sinh(x)
    except OverflowError:
        return math.copysign(inf, x)



def _asin(x):
    """math.asin, nan outside [-1, 1] instead of ValueError."""
    return math.asin(x) if -1.0 <= x <= 1.0 else nan


def _acos(x):
    """math.acos, nan outside [-1, 1] instead of ValueError."""
    return math.acos(x) if -1.0 <= x <= 1.0 else nan


def _acosh(x):
    """math.acosh, nan below 1 instead of ValueError."""
    return math.acosh(x) if x >= 1.0 else nan


def _atanh(x):
    """math.atanh, +-inf at +-1 and nan beyond instead of ValueError."""
    if -1.0 < x < 1.0:
        return math.atanh(x)
    return math.copysign(inf, x) if _abs(x) == 1.0 else nan


def _log1p(x):
    """math.log1p, -inf at -1 and nan below instead of ValueError."""
    if x > -1.0:
        return math.log1p(x)
    return -inf if x == -1.0 else nan






def _hypot(x, y):
    """math.hypot, with inf where the result is beyond floats instead of OverflowError."""
    try:
        return math.hypot(x, y)
    except OverflowError:
        return inf


_LN2 = math.log(2.0)


def _logaddexp(x, y):
    """log(exp(x) + exp(y)) as numpy.logaddexp: the larger plus log1p(exp(-distance)), and
    x + log(2) where x == y (so infinities of one sign give themselves, not nan)."""
    if x == y:
        return x + _LN2
    d = x - y
    if d > 0.0:
        return x + math.log1p(math.exp(-d))
    if d <= 0.0:
        return y + math.log1p(math.exp(d))
    return d  # nan


def _sigmoid(x):
    """1 / (1 + e**-x), computed as PyTorch does; e**-x may overflow to inf, giving 0."""
    return 1.0 / (1.0 + _exp(-x))


def _integral(r, x):
    """A rounding r of x as a float: x itself where it is inf or nan, -0.0 for a zero that
    came from a negative x (as NumPy)."""
    if not math.isfinite(x):
        return x
    r = float(r(x))
    return math.copysign(r, x) if r == 0.0 else r


def _floor(x):
    return _integral(math.floor, x)


def _ceil(x):
    return _integral(math.ceil, x)


def _round_even(x):
    """Python's round, which rounds ties to even, as numpy.round."""
    return _integral(_round, x)


def _mod(x, y):
    """x % y, with nan where y is 0 (Python raises) as numpy.mod."""
    try:
        return x % y
    except ZeroDivisionError:
        return nan


def _floor_divide(x, y):
    """x // y, with x // 0 = inf, -inf or nan (Python raises) as numpy.floor_divide."""
    try:
        return x // y
    except ZeroDivisionError:
        return _div(x, y)

# ---- Complex numbers: cmath, with C99's (and NumPy's) answers where cmath raises ----------
#
# cmath follows C99's Annex G, as NumPy does through the C library, except that it raises
# where C returns an infinity or a nan: ValueError for log(0), atanh(1) and infinite
# arguments of exp, sinh, cosh and tanh (C gives nans), OverflowError where exp(1000 + 1j)
# is beyond floats. The twins below give C's answers there, and the trigonometric functions
# are C's identities sin(z) = -i sinh(iz), cos(z) = cosh(iz), tan(z) = -i tanh(iz), which
# is how cmath and glibc compute them too. A test checks every function on a grid of
# special values (0, -0.0, 1, inf, nan, 1e308, ... in both parts) against NumPy.

def _cexp(z):
    """cmath.exp, with C99's cexp where it raises: inf or nan parts, or an overflow."""
    try:
        return cmath.exp(z)
    except (ValueError, OverflowError):
        pass
    x, y = z.real, z.imag
    if y == 0.0:
        return complex(_exp(x), y)
    if math.isfinite(y):  # x is large: e**x overflows, e**(x/2) may not
        half = _exp(x / 2.0)
        return complex(half * math.cos(y) * half, half * math.sin(y) * half)
    if x == inf:
        return complex(inf, nan)
    return complex(0.0, math.copysign(0.0, y)) if x == -inf else complex(nan, nan)


def _clog(z):
    """cmath.log, with log(0) = -inf + i angle(0) (cmath raises)."""
    try:
        return cmath.log(z)
    except ValueError:
        return complex(-inf, math.atan2(z.imag, z.real))


def _clog10(z):
    """cmath.log10, with log10(0) = -inf + i angle(0) / log(10)."""
    try:
        return cmath.log10(z)
    except ValueError:
        return complex(-inf, math.atan2(z.imag, z.real) / math.log(10.0))


def _clog2(z):
    """The base-2 logarithm, log(z) / log(2), as NumPy's."""
    w = _clog(z)
    return complex(w.real / _LN2, w.imag / _LN2)


def _csinh(z):
    """cmath.sinh, with C99's csinh where it raises (infinite parts, overflow)."""
    try:
        return cmath.sinh(z)
    except (ValueError, OverflowError):
        pass
    x, y = z.real, z.imag
    if y == 0.0:
        return complex(_sinh(x), y)
    if math.isfinite(y):
        if math.isinf(x):
            return complex(x * math.cos(y), inf * math.sin(y))
        half = _exp(_abs(x) / 2.0)  # sinh(x) and cosh(x) are +-e**|x| / 2 out here
        return complex(math.copysign(half, x) * (0.5 * math.cos(y)) * half,
                       half * (0.5 * math.sin(y)) * half)
    if x == 0.0:
        return complex(x, nan)
    return complex(inf, nan) if math.isinf(x) else complex(nan, nan)


def _ccosh(z):
    """cmath.cosh, with C99's ccosh where it raises (infinite parts, overflow)."""
    try:
        return cmath.cosh(z)
    except (ValueError, OverflowError):
        pass
    x, y = z.real, z.imag
    if y == 0.0:
        return complex(_cosh(x), math.copysign(0.0, x) * y)
    if math.isfinite(y):
        if math.isinf(x):
            return complex(inf * math.cos(y), x * math.sin(y))
        half = _exp(_abs(x) / 2.0)
        return complex(half * (0.5 * math.cos(y)) * half,
                       math.copysign(half, x) * (0.5 * math.sin(y)) * half)
    if x == 0.0:
        return complex(nan, 0.0)
    return complex(inf, nan) if math.isinf(x) else complex(nan, nan)


def _ctanh(z):
    """cmath.tanh, with C99's ctanh(+-0 + i inf or nan) = +-0 + i nan (cmath raises or
    gives nan + i nan) and nan + i nan where cmath raises."""
    x = z.real
    if x == 0.0 and not math.isfinite(z.imag):
        return complex(x, nan)
    try:
        return cmath.tanh(z)
    except ValueError:
        return complex(nan, nan)


def _csin(z):
    """sin(z) = -i sinh(iz) (C99's definition)."""
    w = _csinh(complex(-z.imag, z.real))
    return complex(w.imag, -w.real)


def _ccos(z):
    """cos(z) = cosh(iz) (C99's definition)."""
    return _ccosh(complex(-z.imag, z.real))


def _ctan(z):
    """tan(z) = -i tanh(iz) (C99's definition)."""
    w = _ctanh(complex(-z.imag, z.real))
    return complex(w.imag, -w.real)


def _catanh(z):
    """cmath.atanh, with atanh(+-1 +- 0i) = +-inf +- 0i (cmath raises)."""
    try:
        return cmath.atanh(z)
    except ValueError:
        return complex(math.copysign(inf, z.real), z.imag)


def _catan(z):
    """atan(z) = -i atanh(iz) (C99's definition), so atan(+-i) = +-i inf."""
    w = _catanh(complex(-z.imag, z.real))
    return complex(w.imag, -w.real)


def _cacosh(z):
    """cmath.acosh, with C99's acosh(+-0 + i nan) = nan + i pi/2 (cmath gives nan + i nan)."""
    if z.real == 0.0 and z.imag != z.imag:
        return complex(nan, math.pi / 2.0)
    return cmath.acosh(z)


_csqrt, _casin, _cacos, _casinh = cmath.sqrt, cmath.asin, cmath.acos, cmath.asinh


def _cangle(z):
    """atan2(im, re), as numpy.angle (cmath.phase raises on some infinities with nans)."""
    return math.atan2(z.imag, z.real)


def _clog1p(z):
    """log(1 + z) as NumPy's: log(hypot(re + 1, im)) + i atan2(im, re + 1)."""
    return complex(_log(_hypot(z.real + 1.0, z.imag)), math.atan2(z.imag, z.real + 1.0))


def _cexpm1(z):
    """e**z - 1 as NumPy's: expm1(re) cos(im) - 2 sin(im/2)**2 + i e**re sin(im)."""
    x, y = z.real, z.imag
    a = _sin(y / 2.0)
    return complex(_expm1(x) * _cos(y) - 2.0 * a * a, _exp(x) * _sin(y))


def _cexp2(z):
    """2**z as NumPy's: e**(z log 2)."""
    return _cexp(complex(z.real * _LN2, z.imag * _LN2))


def _cabs(z):
    """|z| = hypot(re, im), inf where that is beyond floats (abs(complex) raises)."""
    return _hypot(z.real, z.imag)


def _cdiv(x, y):
    """x / y, with NumPy's answer for y = 0: each part divided by |re y| (inf or nan)."""
    try:
        return x / y
    except ZeroDivisionError:
        return complex(_div(x.real, _abs(y.real)), _div(x.imag, _abs(y.real)))


def _cpow(x, y):
    """x ** y, as numpy.power on complex numbers: 1 for y = 0 (even for nan x), 0 for
    x = 0 and re(y) > 0, nan + i nan for x = 0 and any other y (Python raises), and the
    polar form e**(y log x), with infinities, where Python overflows."""
    if y == 0.0:
        return 1.0 + 0.0j
    if y == 2.0:  # NumPy's products for 2 and 3: z * z is its square, at inf too
        return x * x
    if y == 3.0:
        return x * x * x
    if x == 0.0:
        return 0j if complex(y).real > 0.0 else complex(nan, nan)
    try:
        return complex(x) ** y
    except ZeroDivisionError:
        return 0j if complex(y).real > 0.0 else complex(nan, nan)
    except OverflowError:
        y = complex(y)
        r, angle = _cabs(x), math.atan2(x.imag, x.real)
        size, phase = _pow(r, y.real), angle * y.real
        if y.imag:
            size, phase = _div(size, _exp(angle * y.imag)), phase + y.imag * math.log(r)
        return complex(size * math.cos(phase), size * math.sin(phase))



def _max_of(values):
    """The largest value, nan if any is nan (Python's max would skip a nan, by position)."""
    return nan if any(map(math.isnan, values)) else _max(values)


def _min_of(values):
    """The smallest value, nan if any is nan."""
    return nan if any(map(math.isnan, values)) else _min(values)


def _argmax_of(values):
    """The index of the largest value (the first of ties), or of the first nan, as a float."""
    return _position_of_extreme(values, _max)


def _argmin_of(values):
    """The index of the smallest value (the first of ties), or of the first nan."""
    return _position_of_extreme(values, _min)


def _position_of_extreme(values, pick):
    values = list(values)
    for i, v in enumerate(values):
        if v != v:
            return float(i)
    return float(values.index(pick(values)))


def _prod_of(values):
    """The product of the values, multiplied in order, as a float (1.0 for none)."""
    return float(math.prod(values))


def _sum_of(values):
    """The sum of the values, as a float even when there are none."""
    return _sum(values, 0.0)


def _csum_of(values):
    """The sum of complex values, as a complex number even when there are none."""
    return _sum(values, 0j)


def _cprod_of(values):
    """The product of complex values, multiplied in order (1 for none)."""
    return complex(math.prod(values, start=1.0 + 0.0j))


# ============================================================================================
# Appendix C. Shared constants
#
# A number in an op becomes a constant: a leaf marked {"constant": True}. Tensors are values,
# so one constant can serve every op that uses the same number, as Python shares small ints:
# 10,000 steps of y * 1.0001 then make one constant, not 10,000, a third fewer nodes. This
# changes no result and buys a quarter of the time of examples/benchmark.py's W4 (49 ms against
# 66 ms with a new leaf for every number, medians of 15 runs). Zeros are not shared, since
# 0.0 == -0.0 would mix up their signs; the cache starts afresh when it holds 1,000 numbers.
# ============================================================================================

_constants = {}


def _constant(value):
    """The constant leaf for the float (or bool, or complex) `value`."""
    if type(value) is not float:  # (one test for a float: W4 eager, 1% of Ir)
        if type(value) is bool:  # not shared: True == 1.0 would find 1.0's constant
            return _node(None, None, value, (), (), (), _CONSTANT, bool_)
        if type(value) is complex:  # nor complex numbers: 1+0j == 1.0
            return _node(None, None, value, (), (), (), _CONSTANT, complex128)
    constant = _constants.get(value)
    if constant is None:
        constant = _node(None, None, value, (), (), (), _CONSTANT)
        if value:
            if len(_constants) >= 1000:
                _constants.clear()
            _constants[value] = constant
    return constant


def __getattr__(name):
    """rax.all and rax.any (numpy's all and any; _all and _any here), kept out of this module's
    globals so that its own code still calls Python's all() and any() (PEP 562)."""
    if name in ("all", "any"):
        return _all if name == "all" else _any
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _resolve_rules():
    """Look up the functions that rules name (defined after them), once, now all is here."""
    rules = (*_RULES.values(), _POW_INTEGER)
    for rule in (*rules, *(r.on_complex for r in rules if getattr(r, "on_complex", None))):
        if isinstance(rule, _Elementwise):
            if rule.dtype is not None:
                rule.dtype = _as_dtype(rule.dtype, "rules")
            rule.fn = globals()[rule.fn] if isinstance(rule.fn, str) else rule.fn
            rule.rows = globals()[rule.rows] if isinstance(rule.rows, str) else rule.rows
            rule.safe_fn = globals()[rule.safe] if rule.safe else None


_resolve_rules()
