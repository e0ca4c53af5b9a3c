"""nbnet trace: the numbers it shows are backpropagation's (NumPy's twin, Network.gradients and
finite differences agree with them), its JSON holds every quantity of the lesson, bad options
get one line, and the "Learn backprop" page runs as written and shows what the command prints."""

import json
import re
import shlex

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network, reference
from nbnet.cli import main
from nbnet.gradcheck import PASS_BELOW
from nbnet.trace import CHECK_ALL, CHECKED, trace
from documents import ROOT

SIZES = [5, 6, 4, 3]  # two hidden layers: delta^m is propagated from a hidden layer too (as in test_gradients)
CASES = [("sigmoid", "softmax", "cross-entropy"), ("tanh", "sigmoid", "cross-entropy"), ("relu", "identity", "quadratic"),
         ("sigmoid", "softmax", "quadratic"), ("tanh", "exp", "poisson")]
QUANTITIES = ("W", "b", "z", "a", "delta", "grad_W", "grad_b", "l2_term", "finite_difference_W", "finite_difference_b",
              "W_after", "b_after")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sample(output, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SIZES[0])
    y = 2 if output in ("softmax", "sigmoid") else rng.random(SIZES[-1]) * (3 if output == "exp" else 1)
    return x, y


@pytest.mark.parametrize("activation,output,cost", CASES)
def test_each_quantity_is_the_numpy_twins_and_the_gradients_are_the_derivatives(activation, output, cost):
    net = Network(SIZES, activation=activation, output=output, cost=cost, dtype="float64", seed=1, init="scaled")
    before = [W.copy() for W in net.weights]
    x, y = sample(output)
    lr, l2, n = 0.3, 2.0, 50
    result = trace(net, x, y, lr, l2, n)
    labels = np.array([y]) if np.ndim(y) == 0 else y[None, :]
    zs, activations = reference.forward(net.weights, net.biases, net.acts, x[None, :])
    deltas = reference.backpropagate(net.weights, net.acts, net.cost_function.code, labels, zs, activations)
    inputs = [x[None, :]] + activations[:-1]
    for m, layer in enumerate(result.layers):
        for got, want in ((layer.z, zs[m]), (layer.a, activations[m]), (layer.delta, deltas[m])):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        grad_W, grad_b = reference.weight_gradient(deltas[m], inputs[m], net.weights[m], l2 / n)
        np.testing.assert_allclose(layer.grad_W, grad_W, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.grad_b, grad_b, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(layer.l2_term, l2 / n * net.weights[m])
        np.testing.assert_allclose(layer.W_after, net.weights[m] - lr * grad_W, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.b_after, net.biases[m] - lr * grad_b, rtol=1e-12, atol=1e-15)
        assert not np.isnan(layer.numeric_W).any() and not np.isnan(layer.numeric_b).any()  # (small: every entry)
    # the gradients Network.gradients computes (the compiled passes), and the derivatives of J
    grads_W, grads_b = net.gradients(x[None, :], labels, l2, n)
    for layer, grad_W, grad_b in zip(result.layers, grads_W, grads_b):
        np.testing.assert_allclose(layer.grad_W, grad_W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.grad_b, grad_b, rtol=1e-9, atol=1e-12)
    assert result.worst_error() < PASS_BELOW
    assert result.cost == pytest.approx(net.cost(x[None, :], labels, l2, n), rel=1e-9)
    assert result.cost_after < result.cost  # a small step downhill
    for W, W_before in zip(net.weights, before):
        np.testing.assert_array_equal(W, W_before)  # the network itself is left as it was


def test_a_wrong_gradient_is_caught_by_the_finite_differences():
    """The check can fail: a gradient off by a little is reported, not waved through."""
    net = Network(SIZES, dtype="float64", seed=1)
    x, y = sample("softmax")
    result = trace(net, x, y, 0.1)
    result.layers[0].grad_W *= 1.001
    assert result.worst_error() > PASS_BELOW and not result.passed()


def test_json_holds_every_quantity_and_the_text_prints_the_same_numbers():
    args = ("trace", "--hidden", 3, "--l2", 5, "--sample", 4, "--seed", 2)
    loaded = invoke(*args, "--format", "json")
    assert loaded.exit_code == 0, loaded.output
    values = json.loads(loaded.output)
    assert values["sizes"] == [64, 3, 10] and values["sample"] == 4 and values["n_train"] == 1438
    assert set(values["cost"]) == {"data", "l2", "total", "after_step"} and values["cost"]["l2"] > 0
    for layer in values["layers"]:
        assert set(QUANTITIES) <= set(layer)
        assert layer["relative_error_W"] < PASS_BELOW and layer["relative_error_b"] < PASS_BELOW
    # the same network, data split and sample as `nbnet train --seed 2 --hidden 3 --dtype float64` starts from
    from nbnet.data import load_digits
    net = Network([64, 3, 10], dtype="float64", seed=2)
    digits = load_digits(seed=2, dtype="float64")
    X_train, y_train = digits.X_train, digits.y_train
    np.testing.assert_array_equal(values["x"], X_train[4])
    assert values["y"] == int(y_train[4])
    grads_W, grads_b = net.gradients(X_train[4:5], y_train[4:5], 5.0, 1438)
    for layer, grad_W, grad_b in zip(values["layers"], grads_W, grads_b):
        np.testing.assert_allclose(layer["grad_W"], grad_W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer["grad_b"], grad_b, rtol=1e-9, atol=1e-12)
    printed = invoke(*args)
    assert printed.exit_code == 0, printed.output
    line = next(line for line in printed.output.splitlines() if line.lstrip().startswith("dJ/db^2 ="))
    shown = [float(v) for v in re.findall(r"-?\d[\d.e+-]*", line.split("=", 1)[1])]
    np.testing.assert_allclose(shown, values["layers"][1]["grad_b"], rtol=1e-5)  # (6 significant digits)
    assert "Gradient check: largest relative error" in printed.output and "excellent" in printed.output


def test_wide_layers_are_summarised_and_checked_at_random_entries():
    hidden = CHECK_ALL // 64 + 1  # W^1 of the digits' 64 inputs has more than CHECK_ALL weights
    result = invoke("trace", "--hidden", hidden, "--activation", "relu", "--format", "json")
    assert result.exit_code == 0, result.output
    first = json.loads(result.output)["layers"][0]
    checked = sum(v is not None for row in first["finite_difference_W"] for v in row)
    assert checked == CHECKED and first["relative_error_W"] < PASS_BELOW
    text = invoke("trace", "--hidden", hidden, "--activation", "relu").output
    assert f"{CHECKED} of {64 * hidden} entries, at random" in text
    assert f"z^1: shape ({hidden},), norm" in text and "W^1 after: shape" in text
    whole = invoke("trace", "--hidden", hidden, "--activation", "relu", "--full").output
    assert "z^1 = [" in whole and "shape (" not in whole


@pytest.mark.parametrize("args,code,message", [
    (("--sample", 100000), 2, "digits has 1438 training samples"),
    (("--hidden", 0), 2, "layer sizes must be at least 1"),
    (("--dataset", "missing.csv"), 1, "missing.csv"),
    (("--output", "identity"), 2, "the cross-entropy cost needs a sigmoid or softmax output"),
])
def test_bad_options_get_one_line(args, code, message):
    result = invoke("trace", *args)
    assert result.exit_code == code and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()[-1]) > 0


def test_the_learn_backprop_page_runs_as_written_and_shows_what_the_command_prints(tmp_path, monkeypatch):
    """Every command of docs/learn-backprop.md, run as written; every text block on the page is
    lines of the output of the command above it; then its Python, on that output."""
    monkeypatch.chdir(tmp_path)
    page = (ROOT / "docs" / "learn-backprop.md").read_text()
    blocks = re.findall(r"```(bash|text|python)\n(.*?)```", page, re.S)
    output = None
    for kind, body in blocks:
        if kind == "bash":
            for command in body.strip().splitlines():
                words = shlex.split(command)
                assert words[0] == "nbnet"
                target = words.index(">") if ">" in words else None
                result = invoke(*words[1:target])
                assert result.exit_code == 0, (command, result.output)
                output = result.output.splitlines()
                if target is not None:
                    (tmp_path / words[target + 1]).write_text(result.output)
        elif kind == "text":
            shown = body.rstrip("\n").splitlines()
            # each run of lines of a block is consecutive lines of the output (a block may join two runs)
            position = 0
            for line in shown:
                found = [i for i in range(position, len(output)) if output[i].rstrip() == line.rstrip()]
                assert found, f"not in the output of the command above it: {line!r}"
                position = found[0] + 1
        else:
            exec(compile(body, "learn-backprop.md", "exec"), {})


def test_the_readme_trace_commands_are_the_pages():
    """The README's `nbnet trace` commands are the page's, which the test above runs as written."""
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "learn-backprop.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("nbnet trace")]
    assert len(commands) == 2 and all(f"\n{command}\n" in page for command in commands)


def test_the_docs_build_renders_maths_outside_code_and_includes_the_loops():
    """docs/hooks.py: $...$ and $$ blocks become MathML (not in code: `$HOME` stays), a
    `<!-- loop: NAME -->` line becomes that function of nbnet/loops.py, a wrong name stops the build."""
    pytest.importorskip("latex2mathml")
    pytest.importorskip("mkdocs")
    import importlib.util
    from types import SimpleNamespace

    from mkdocs.exceptions import PluginError

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = SimpleNamespace(file=SimpleNamespace(src_path="page.md"))
    markdown = ("Layer $m$ and `$HOME` here.\n\n$$\n\\delta^L = a^L - y\n$$\n\n"
                "<!-- loop: sgd_step, kernel: gradient_step -->\n")
    written = hooks.on_page_markdown(markdown, page, None, None)
    assert "`$HOME`" in written and "$m$" not in written and "$$" not in written
    assert "def sgd_step(grad_W, grad_b, lr, W, b):" in written and "(api.md#nbnet.kernels.gradient_step)" in written
    html = hooks.on_page_content(written.replace(hooks.TOKEN.format(1), f"<p>{hooks.TOKEN.format(1)}</p>"), page,
                                 None, None)
    assert html.count("<math") == 2 and '<div class="math"><math' in html and "nbnetmath" not in html
    with pytest.raises(PluginError, match="no function 'sgd_steps'"):
        hooks.on_page_markdown("<!-- loop: sgd_steps -->\n", page, None, None)
