"""Plots drawn with characters, so that every lesson shows a picture with nothing installed.

Two pictures, each returned as a string of `height` lines, the longest `width` characters
wide (trailing spaces are dropped):

- line_plot(values): one or more curves against the step number, such as a loss curve;
- decision_boundary(predict_fn, points, labels): the class a model gives each spot of the
  plane, with the training points drawn on top.

And, for when matplotlib happens to be installed, save_figure() writes the same pictures
to an image file; without matplotlib it prints a one-line note and carries on.

>>> print(line_plot([4.0, 2.0, 1.0, 0.5, 0.25], width=24, height=6, title="loss"))
loss
   4 +***
     |  *******
0.25 +        **********
     +------------------
      0      step      4
"""

import math

SERIES_MARKS = "*o+x#@"  # curve k of a line plot is drawn with SERIES_MARKS[k]
POINT_MARKS = "ox#+@%"  # a training point of class k is drawn as POINT_MARKS[k]
REGION_MARKS = " .-:'~"  # a spot the model puts in class k is shaded with REGION_MARKS[k]
MIXED_MARK = "*"  # a cell holding training points of more than one class
FIGURE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _fit(line, width):
    """line cut to at most `width` characters, without trailing spaces."""
    return line[:width].rstrip()


# ---- line plots ---------------------------------------------------------------------------

def on_log_axis(curve):
    """The curve as both line_plot and save_figure draw it on a log axis: a value <= 0 has
    no place there, so it becomes nan and is left out, a gap in the curve.

    Left out rather than clamped to the bottom of the plot, which would show a value the
    curve does not have; matplotlib by itself would draw a line plunging off the axes.
    """
    return [v if v > 0.0 else math.nan for v in map(float, curve)]


def _interpolate(values, x):
    """The value of the broken line through (i, values[i]) at position x, or None past the
    end or next to a value that is not finite (such as a loss that became nan)."""
    i = math.floor(x)
    if i >= len(values) - 1:
        last = values[-1]
        return last if x <= len(values) - 1 + 1e-9 and math.isfinite(last) else None
    a, b = values[i], values[i + 1]
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a + (x - i) * (b - a)


def _column_spans(values, n_columns, n_steps):
    """For each column of the plot, the (lowest, highest) value the curve takes in it.

    Column c covers the steps from x[c-1] to x[c], where x[c] = c (n_steps - 1) / (n_columns
    - 1); it spans every sample inside that interval and the curve's values at both ends, so
    a curve longer than the plot keeps its spikes, a shorter one is interpolated, and
    neighbouring columns meet: the curve is drawn without gaps. None where the curve is
    absent.
    """
    scale = (n_steps - 1) / (n_columns - 1)  # steps per column; line_plot ensures 2+ columns
    spans = []
    for c in range(n_columns):
        start, stop = (c - 1) * scale if c else 0.0, c * scale
        inside = [values[i] for i in range(math.ceil(start), math.floor(stop) + 1)
                  if i < len(values) and math.isfinite(values[i])]
        ends = [_interpolate(values, start), _interpolate(values, stop)]
        found = inside + [v for v in ends if v is not None]
        spans.append((min(found), max(found)) if found else None)
    return spans


def line_plot(values, width=60, height=12, title=None, log_scale=False, x_label="step",
              x_range=None):
    """Curves drawn with characters: `height` lines, the longest `width` characters.

    Args:
        values: a list of numbers (one curve), or a dict {name: list of numbers} for several
            curves, drawn with the marks * o + x # @ (the first curve on top) and named in
            the top line.
        title: the top line's text. log_scale: a logarithmic y axis, which shows a loss
            falling by orders of magnitude (values <= 0 are then left out: on_log_axis).
        x_label: the name of the x axis, whose ticks are 0 and the last step, or the two
            ends of x_range = (first x, last x) when the values are samples of a function.

    Values that are not finite (a loss that became nan) are left out of the curve.
    """
    curves = dict(values) if isinstance(values, dict) else {"": values}
    curves = {name: [float(v) for v in curve] for name, curve in curves.items()}
    if log_scale:
        curves = {name: on_log_axis(curve) for name, curve in curves.items()}
    legend = "  ".join(f"{mark} {name}" for mark, name in zip(SERIES_MARKS, curves) if name)
    header = [text for text in (title, legend) if text]
    if len(header) == 2 and len(title) + 3 + len(legend) <= width:
        header = [title + "   " + legend]  # one line for both when they fit
    n_rows = height - 2 - len(header)  # less the header, the x axis and its tick labels

    def to_axis(v):  # where a value sits on the y axis
        return math.log10(v) if log_scale else v

    shown = [to_axis(v) for curve in curves.values() for v in curve if math.isfinite(v)]
    low, high = (min(shown), max(shown)) if shown else (0.0, 1.0)
    if high == low:  # a flat curve: put it in the middle
        low, high = low - 1.0, high + 1.0

    def from_axis(a):
        return 10.0 ** a if log_scale else a

    tick_rows = {0: from_axis(high), n_rows - 1: from_axis(low)}
    if n_rows >= 7:
        tick_rows[(n_rows - 1) // 2] = from_axis(high - (n_rows - 1) // 2 / (n_rows - 1)
                                                 * (high - low))
    ticks = {row: f"{value:.3g}" for row, value in tick_rows.items()}
    margin = max(len(text) for text in ticks.values())
    n_columns = width - margin - 2
    if n_rows < 2 or n_columns < 2:
        raise ValueError(f"line_plot: {width} x {height} characters is too small for a plot")

    def row_of(v):  # row 0 is the top
        return round((high - to_axis(v)) / (high - low) * (n_rows - 1))

    grid = [[" "] * n_columns for _ in range(n_rows)]
    n_steps = max((len(curve) for curve in curves.values()), default=0)
    for mark, curve in reversed(list(zip(SERIES_MARKS, curves.values()))):
        if not curve:
            continue
        for c, span in enumerate(_column_spans(curve, n_columns, n_steps)):
            if span is not None:
                for row in range(row_of(span[1]), row_of(span[0]) + 1):
                    grid[row][c] = mark

    lines = [_fit(text, width) for text in header]
    for row, cells in enumerate(grid):
        axis = f"{ticks[row]:>{margin}} +" if row in ticks else " " * margin + " |"
        lines.append(_fit(axis + "".join(cells), width))
    lines.append(_fit(" " * margin + " +" + "-" * n_columns, width))
    first, last = ("0", str(max(n_steps - 1, 0))) if x_range is None else (
        f"{x_range[0]:g}", f"{x_range[1]:g}")
    gap = n_columns - len(first) - len(last)
    middle = x_label.center(gap) if len(x_label) + 2 <= gap else " " * gap
    lines.append(_fit(" " * (margin + 2) + first + middle + last, width))
    return "\n".join(lines)


# ---- decision boundaries ------------------------------------------------------------------

def _as_pairs(points):
    """points as a list of (x, y) floats; a rax Tensor of shape (n, 2) works too."""
    if hasattr(points, "tolist"):
        points = points.tolist()
    return [(float(x), float(y)) for x, y in points]


def plane_grid(points, n_columns, n_rows, padding=0.05):
    """A grid of cells over the box around the points (widened by `padding` on each side).

    Returns (xs, ys, centres): the x of each column's centre, the y of each row's centre
    from the top row down, and every cell's centre [x, y] row by row: the input a model
    classifies in one batch to draw its decision regions.
    """
    pairs = _as_pairs(points)
    x_low, x_high = min(x for x, _ in pairs), max(x for x, _ in pairs)
    y_low, y_high = min(y for _, y in pairs), max(y for _, y in pairs)
    x_pad = (x_high - x_low) * padding or 1.0  # `or 1.0`: all points on one vertical line
    y_pad = (y_high - y_low) * padding or 1.0
    x_low, x_high, y_low, y_high = x_low - x_pad, x_high + x_pad, y_low - y_pad, y_high + y_pad
    xs = [x_low + (c + 0.5) * (x_high - x_low) / n_columns for c in range(n_columns)]
    ys = [y_high - (r + 0.5) * (y_high - y_low) / n_rows for r in range(n_rows)]
    return xs, ys, [[x, y] for y in ys for x in xs]


def decision_boundary(predict_fn, points, labels, width=60, height=20, title=None):
    """The plane shaded by the class a model gives each spot, with the points on top.

    `height` lines, the longest `width` characters: a title line (if any), a frame around a
    grid of cells, and a legend line. Each cell is shaded with REGION_MARKS[k] for the class
    k the model gives its centre; a cell holding training points shows POINT_MARKS[label]
    (MIXED_MARK when they have different labels), so a point drawn on another class's shade
    is one the model gets wrong.

    Args:
        predict_fn: predict_fn(centres) -> a class index for each [x, y] in centres; called
            once, with every cell, so the model classifies them in one batch.
        points: (x, y) pairs (or a Tensor of shape (n, 2)); labels: their class indices.
    """
    pairs = _as_pairs(points)
    labels = [int(label) for label in labels]
    n_rows, n_columns = height - 3 - (1 if title else 0), width - 2  # less frame and legend
    if n_rows < 2 or n_columns < 2:
        raise ValueError(f"decision_boundary: {width} x {height} characters is too small")
    xs, ys, centres = plane_grid(pairs, n_columns, n_rows)
    classes = [int(k) for k in predict_fn(centres)]
    grid = [[REGION_MARKS[k % len(REGION_MARKS)] for k in classes[r * n_columns:
                                                                  (r + 1) * n_columns]]
            for r in range(n_rows)]

    # The cell of a point is the one whose centre is nearest: round, not floor.
    cell_width, cell_height = xs[1] - xs[0], ys[0] - ys[1]
    labels_in_cell = {}
    for (x, y), label in zip(pairs, labels):
        column = min(max(round((x - xs[0]) / cell_width), 0), n_columns - 1)
        row = min(max(round((ys[0] - y) / cell_height), 0), n_rows - 1)
        labels_in_cell.setdefault((row, column), set()).add(label)
    for (row, column), found in labels_in_cell.items():
        grid[row][column] = (POINT_MARKS[found.pop() % len(POINT_MARKS)] if len(found) == 1
                             else MIXED_MARK)

    n_classes = max(labels + classes) + 1
    legend = ("points " + " ".join(f"{POINT_MARKS[k]}={k}" for k in range(n_classes))
              + f" {MIXED_MARK}=mixed   regions "
              + " ".join(f"'{REGION_MARKS[k]}'={k}" for k in range(n_classes)))
    lines = [_fit(title, width)] if title else []
    lines.append("+" + "-" * n_columns + "+")
    lines += ["|" + "".join(cells) + "|" for cells in grid]
    lines.append("+" + "-" * n_columns + "+")
    lines.append(_fit(legend, width))
    return "\n".join(lines)


# ---- figures, when matplotlib is installed ------------------------------------------------

def pyplot_or_none():
    """matplotlib.pyplot drawing to files, or None (after a one-line note) when matplotlib
    is not installed: a figure is a bonus, never a requirement."""
    try:
        import matplotlib
    except ImportError:
        print("note: --plot needs matplotlib (pip install matplotlib); no figure saved")
        return None
    matplotlib.use("Agg")  # draw to files only: no window, no display needed
    import matplotlib.pyplot as plt
    return plt


def save_figure(path, curves, title="loss", log_scale=False, x_label="step", x_range=None,
                boundary=None):
    """Save the curves (a list, or a dict {name: list}) as an image at `path`, as
    line_plot draws them; with boundary=(predict_fn, points, labels), the decision regions
    stand beside them.

    Returns True if the figure was saved, False if matplotlib is not installed.
    """
    plt = pyplot_or_none()
    if plt is None:
        return False
    curves = dict(curves) if isinstance(curves, dict) else {"": curves}
    n_panels = 1 if boundary is None else 2
    figure, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.5), squeeze=False)
    ax = axes[0][0]
    for name, curve in curves.items():
        xs = range(len(curve)) if x_range is None else [
            x_range[0] + (x_range[1] - x_range[0]) * i / max(len(curve) - 1, 1)
            for i in range(len(curve))]
        ax.plot(xs, on_log_axis(curve) if log_scale else curve, label=name or None)
    ax.set(title=title, xlabel=x_label, yscale="log" if log_scale else "linear")
    if any(curves):
        ax.legend()
    if boundary is not None:
        predict_fn, points, labels = boundary
        pairs = _as_pairs(points)
        xs, ys, centres = plane_grid(pairs, 150, 150)
        classes = [int(k) for k in predict_fn(centres)]
        regions = [classes[r * len(xs):(r + 1) * len(xs)] for r in range(len(ys))]
        n_classes = max(classes + [int(k) for k in labels]) + 1
        colors = [FIGURE_COLORS[k % len(FIGURE_COLORS)] for k in range(n_classes)]
        ax = axes[0][1]
        ax.contourf(xs, ys, regions, levels=[k - 0.5 for k in range(n_classes + 1)],
                    colors=colors, alpha=0.25)
        ax.scatter([x for x, _ in pairs], [y for _, y in pairs], s=12, linewidths=0.3,
                   c=[colors[int(k)] for k in labels], edgecolors="black")
        ax.set(title="decision regions and training points", aspect="equal")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"saved the figure to {path}")
    return True
