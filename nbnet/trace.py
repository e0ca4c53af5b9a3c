"""One sample through backpropagation, every equation of the lesson with its numbers (`nbnet trace`).

The steps run through the plain loops of nbnet/loops.py as Python (each loop's `.py_func`: the
very lines a reader reads, with nothing to compile), on one sample x with label y:

    forward    z^m = W^m a^(m-1) + b^m,  a^m = f(z^m),  a^0 = x       loops.weighted_sum, loops.activate
    cost       J = J(a^L, y) + (lambda / 2n) sum_m sum W^m^2           nbnet.costs, Network.l2_penalty
    backward   delta^L = f'(z^L) * dJ/da^L                             loops.output_delta
               delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1)             loops.hidden_delta
    gradients  dJ/dW^m = delta^m (a^(m-1))^T + (lambda/n) W^m,  dJ/db^m = delta^m   loops.weight_gradient
    update     W^m -= alpha dJ/dW^m,  b^m -= alpha dJ/db^m             loops.sgd_step

n is the number of training samples, as in a training run (the L2 term is spread over them).
Every gradient is checked against finite differences of J (nbnet.gradcheck's fourth-order
central difference, J computed by NumPy's matrix form, nbnet.reference): all entries of a layer
of at most CHECK_ALL weights, else CHECKED of them picked at random (the rest would take minutes
of differences for no new information). Everything is float64, so that the differences mean
something. A network trained on a table sees standardised inputs and targets (nbnet.scaling):
the trace shows what the loops see, in those units.
"""

from dataclasses import dataclass, field

import numpy as np

from . import loops, reference
from .gradcheck import PASS_BELOW, central_difference, relative_error, smooth_step, verdict
from .network import l2_penalty

CHECK_ALL = 2000  # a layer with at most this many weights has every one checked
CHECKED = 200  # else this many, at random


@dataclass
class Layer:
    """Layer m's numbers: parameters before the step, the forward and backward quantities, the
    gradients with their finite differences (NaN where not checked), the parameters after."""

    m: int
    W: np.ndarray
    b: np.ndarray
    z: np.ndarray = None
    a: np.ndarray = None
    delta: np.ndarray = None
    grad_W: np.ndarray = None
    grad_b: np.ndarray = None
    l2_term: np.ndarray = None
    numeric_W: np.ndarray = None
    numeric_b: np.ndarray = None
    W_after: np.ndarray = None
    b_after: np.ndarray = None

    def errors(self):
        """(relative error of dJ/dW^m, of dJ/db^m) over the checked entries (nbnet.gradcheck)."""
        return tuple(relative_error(g[checked], n[checked]) for g, n in
                     ((self.grad_W, self.numeric_W), (self.grad_b, self.numeric_b))
                     for checked in [~np.isnan(n)])


@dataclass
class Trace:
    x: np.ndarray  # a^0, as the network sees it
    y: object  # class id, or the row of targets
    lr: float
    l2: float
    n_train: int
    layers: list = field(default_factory=list)
    data_cost: float = None  # J(a^L, y)
    l2_cost: float = None  # (lambda / 2n) sum W^2
    cost_after: float = None  # J after the step, on the same sample
    step: float = None  # h of the finite differences

    @property
    def cost(self):
        return self.data_cost + self.l2_cost

    def worst_error(self):
        return max(max(layer.errors()) for layer in self.layers)

    def passed(self):
        return self.worst_error() < PASS_BELOW


def trace(net, x, y, lr, l2=0.0, n_train=1, seed=0):
    """The Trace of one SGD step of the float64 Network `net` on the sample x (inputs as the network
    sees them, shape (n_in,)) with class id or target row y; `net` itself is left unchanged."""
    if net.dtype != np.float64:
        raise ValueError("a trace runs in float64")
    X = np.ascontiguousarray(x, dtype=np.float64).reshape(1, -1)
    labels = np.array([y], dtype=np.int64) if np.ndim(y) == 0 else np.asarray(y, dtype=np.float64).reshape(1, -1)
    result = Trace(X[0], y, lr, l2, n_train)
    result.layers = [Layer(m, W.copy(), b.copy()) for m, (W, b) in enumerate(zip(net.weights, net.biases), 1)]
    # forward: z^m = W^m a^(m-1) + b^m, a^m = f(z^m)
    a_prev = X
    for layer, act in zip(result.layers, net.acts):
        layer.z = np.empty((1, layer.W.shape[0]))
        layer.a = np.empty_like(layer.z)
        loops.weighted_sum.py_func(layer.W, layer.b, a_prev, layer.z)
        loops.activate.py_func(layer.z, act, layer.a)
        a_prev = layer.a
    # cost J: the sample's, and the L2 term
    last = result.layers[-1]
    result.data_cost = float(reference.output_cost(last.z, last.a, labels, net.acts[-1], net.cost_function.code)[0][0])
    result.l2_cost = net.l2_penalty(l2, n_train)
    # backward: delta^L, then delta^m for m = L-1 .. 1
    for layer in result.layers:
        layer.delta = np.empty_like(layer.z)
    loops.output_delta.py_func(last.z, last.a, labels, net.acts[-1], net.cost_function.code, last.delta)
    for layer, above, act in zip(result.layers[-2::-1], result.layers[:0:-1], net.acts[-2::-1]):
        loops.hidden_delta.py_func(above.W, above.delta, layer.z, layer.a, act, layer.delta)
    # gradients, then the step
    inputs = [X] + [layer.a for layer in result.layers[:-1]]
    for layer, a_prev in zip(result.layers, inputs):
        layer.grad_W, layer.grad_b = np.empty_like(layer.W), np.empty_like(layer.b)
        loops.weight_gradient.py_func(layer.delta, a_prev, layer.W, l2 / n_train, layer.grad_W, layer.grad_b)
        layer.l2_term = (l2 / n_train) * layer.W
        layer.W_after, layer.b_after = layer.W.copy(), layer.b.copy()
        loops.sgd_step.py_func(layer.grad_W, layer.grad_b, lr, layer.W_after, layer.b_after)
    # finite differences of J, and J after the step
    # (the differences move one entry of layer.W or layer.b at a time and put it back)
    result.step = smooth_step(net, X)
    rng = np.random.default_rng(seed)
    weights, biases = [layer.W for layer in result.layers], [layer.b for layer in result.layers]
    for layer in result.layers:
        layer.numeric_W = numerical_gradient(net, weights, biases, layer.W, X, labels, l2, n_train, result.step, rng)
        layer.numeric_b = numerical_gradient(net, weights, biases, layer.b, X, labels, l2, n_train, result.step, rng)
    result.cost_after = cost(net, [layer.W_after for layer in result.layers],
                             [layer.b_after for layer in result.layers], X, labels, l2, n_train)
    return result


def cost(net, weights, biases, X, labels, l2, n_train):
    """J of the network with these weights and biases: mean_s J(a^L_s, y_s) + (lambda / 2n) sum W^2,
    by NumPy (nbnet.reference)."""
    zs, activations = reference.forward(weights, biases, net.acts, X)
    J = reference.output_cost(zs[-1], activations[-1], labels, net.acts[-1], net.cost_function.code)[0]
    return float(np.mean(J)) + l2_penalty(weights, l2, n_train)


def numerical_gradient(net, weights, biases, P, X, labels, l2, n_train, h, rng):
    """dJ/dP by fourth-order central differences (nbnet.gradcheck) at every entry of P, or at
    CHECKED entries picked with rng when P has more than CHECK_ALL; NaN at the others. P is one
    of `weights` or `biases`, changed and restored in place."""
    G = np.full(P.shape, np.nan)
    flat = np.arange(P.size) if P.size <= CHECK_ALL else np.sort(rng.choice(P.size, CHECKED, replace=False))
    for index in zip(*np.unravel_index(flat, P.shape)):
        G[index] = central_difference(lambda: cost(net, weights, biases, X, labels, l2, n_train), P, index, h)
    return G


# ----------------------------------------------------------------------------- printing
FULL_SIZE = 10  # arrays of at most this many rows and columns are printed whole
WIDE = 130  # a gradient and its finite differences side by side when both fit this many characters


def number(v):
    return f"{v: .6g}"


def row_text(values):
    return "[" + " ".join(f"{number(v):>12}" for v in values) + " ]"


def summary(A):
    """Shape, norm, range and the first entries of a large array."""
    flat = A.ravel()
    return (f"shape {A.shape}, norm {np.linalg.norm(flat):.6g}, min {flat.min():.6g}, max {flat.max():.6g}, "
            f"first {' '.join(number(v).strip() for v in flat[:4])} ...")


def shown_whole(A, full):
    matrix = np.atleast_2d(A)
    return full or (matrix.shape[0] <= FULL_SIZE and matrix.shape[1] <= FULL_SIZE)


def array_lines(name, A, full, indent="    "):
    """`name = values` for a small array (one line per row of a matrix), or its summary."""
    if not shown_whole(A, full):
        return [f"{indent}{name}: {summary(A)}"]
    if A.ndim == 1:
        return [f"{indent}{name} = {row_text(A)}"]
    lead = f"{indent}{name} = "
    return [(lead if j == 0 else " " * len(lead)) + row_text(row) for j, row in enumerate(A)]


def gradient_lines(name, G, N, full, indent="    "):
    """The gradient G with its finite differences N beside it (below it, when both would not fit
    a line of WIDE characters), and their relative error."""
    checked = ~np.isnan(N)
    error = relative_error(G[checked], N[checked])
    if shown_whole(G, full):
        lines = array_lines(name, G, full, indent)
        beside = array_lines("finite difference", N, full, "")
        if max(map(len, lines)) + 3 + max(map(len, beside)) <= WIDE:
            lines = [f"{line}   {other}" for line, other in zip(lines, beside)]
        else:
            width = max(len(name), len("finite difference"))
            lines = array_lines(name.rjust(width), G, full, indent) + \
                array_lines("finite difference".rjust(width), N, full, indent)
    else:
        lines = [f"{indent}{name}: {summary(G)}"]
        largest = np.argsort(-np.where(checked, np.abs(G), -1).ravel(), kind="stable")[:3]
        for flat in largest:
            index = np.unravel_index(flat, G.shape)
            where = ", ".join(str(int(i)) for i in index)
            lines.append(f"{indent}  [{where}] {number(G[index])}   finite difference {number(N[index])}")
    checked_text = "every entry" if checked.all() else f"{int(checked.sum())} of {G.size} entries, at random"
    lines.append(f"{indent}  relative error {error:.1e} over {checked_text}: {verdict(error)}")
    return lines


def text(result, title, full=False):
    """The trace as the lines `nbnet trace` prints: the equations in the order of the lesson."""
    L = len(result.layers)
    out = [title, ""]
    out.append("Forward pass   z^m = W^m a^(m-1) + b^m,  a^m = f(z^m)   (loops.weighted_sum, loops.activate)")
    out += array_lines("a^0 = x", result.x, full)
    for layer in result.layers:
        out += array_lines(f"z^{layer.m}", layer.z[0], full)
        out += array_lines(f"a^{layer.m}", layer.a[0], full)
    out.append("")
    out.append("Cost   J = J(a^L, y) + (lambda / 2n) sum W^2")
    if np.ndim(result.y) == 0:
        n_out = result.layers[-1].a.shape[1]
        out.append(f"    y = e_{int(result.y)}, class {int(result.y)} one-hot: [{' '.join('1' if j == result.y else '0' for j in range(n_out))}]")
    else:
        out += array_lines("y", np.asarray(result.y, dtype=np.float64), full)
    out.append(f"    J(a^{L}, y) = {number(result.data_cost).strip()}   L2 term = {number(result.l2_cost).strip()}"
               f"   J = {number(result.cost).strip()}")
    out.append("")
    out.append("Output error   delta^L = f'(z^L) * dJ/da^L   (loops.output_delta)")
    out += array_lines(f"delta^{L}", result.layers[-1].delta[0], full)
    if L > 1:
        out.append("Backpropagated error   delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1)   (loops.hidden_delta)")
        for layer in result.layers[-2::-1]:
            out += array_lines(f"delta^{layer.m}", layer.delta[0], full)
    out.append("")
    out.append("Gradients   dJ/dW^m = delta^m (a^(m-1))^T + (lambda/n) W^m,  dJ/db^m = delta^m   "
               "(loops.weight_gradient), each beside")
    out.append(f"its fourth-order central finite difference of J (h = {result.step:.3g})")
    for layer in result.layers:
        out += gradient_lines(f"dJ/dW^{layer.m}", layer.grad_W, layer.numeric_W, full)
        if result.l2:
            out += array_lines(f"L2 term (lambda/n) W^{layer.m}", layer.l2_term, full)
        out += gradient_lines(f"dJ/db^{layer.m}", layer.grad_b, layer.numeric_b, full)
    out.append("")
    out.append(f"Update   W^m -= alpha dJ/dW^m,  b^m -= alpha dJ/db^m   (loops.sgd_step, alpha = {result.lr:g})")
    for layer in result.layers:
        out += array_lines(f"W^{layer.m} after", layer.W_after, full)
        out += array_lines(f"b^{layer.m} after", layer.b_after, full)
    out.append("")
    change = result.cost_after - result.cost
    out.append(f"J after the step, same sample: {number(result.cost_after).strip()} "
               f"({'down' if change < 0 else 'up'} {abs(change):.3g} from {number(result.cost).strip()})")
    worst = result.worst_error()
    out.append(f"Gradient check: largest relative error {worst:.1e}, {verdict(worst)}")
    return out


def as_json(result, about):
    """The trace as JSON-ready values (unchecked finite differences are null)."""
    def values(A):
        return np.where(np.isnan(A), None, A).tolist() if np.isnan(A).any() else A.tolist()

    return dict(
        about,
        x=result.x.tolist(),
        y=int(result.y) if np.ndim(result.y) == 0 else np.asarray(result.y).tolist(),
        lr=result.lr, l2=result.l2, n_train=result.n_train, finite_difference_step=result.step,
        cost=dict(data=result.data_cost, l2=result.l2_cost, total=result.cost, after_step=result.cost_after),
        layers=[dict(m=layer.m, W=layer.W.tolist(), b=layer.b.tolist(), z=layer.z[0].tolist(), a=layer.a[0].tolist(),
                     delta=layer.delta[0].tolist(), grad_W=layer.grad_W.tolist(), grad_b=layer.grad_b.tolist(),
                     l2_term=layer.l2_term.tolist(), finite_difference_W=values(layer.numeric_W),
                     finite_difference_b=values(layer.numeric_b),
                     **dict(zip(("relative_error_W", "relative_error_b"), layer.errors())),
                     W_after=layer.W_after.tolist(), b_after=layer.b_after.tolist())
                for layer in result.layers],
        largest_relative_error=result.worst_error(),
    )
