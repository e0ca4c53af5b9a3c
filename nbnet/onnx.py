"""A trained network out of Python: ONNX graphs of nbnet's models, which any ONNX runtime runs
(onnxruntime on a server, in a browser, on a phone). Needs the `onnx` extra
(`pip install nbnet[onnx]`: onnx, onnxruntime, skl2onnx).

    import nbnet.onnx                      # registers nbnet's estimators with skl2onnx
    from skl2onnx import to_onnx
    onx = to_onnx(model, X[:1])            # an nbnet.sklearn MLPClassifier or MLPRegressor, or a
                                           # Pipeline that holds one, as for scikit-learn's own

    nbnet export MODEL.npz MODEL.onnx      # a model saved by nbnet train (export_model below)

The graph of the network is the forward pass, one layer at a time, z^m = a^(m-1) W^m^T + b^m
(MatMul, Add) and a^m = f(z^m) (Sigmoid, Tanh, Relu, Identity, Softmax, Exp), in the model's
dtype (float32 or float64). A classifier adds its class labels (ArgMax, then the label of that
column; a multi-label one, 1 where the probability exceeds 1/2), as skl2onnx's converters of
scikit-learn's MLPs do, with the same options (zipmap, nocl, output_class_labels). A model of
`nbnet train` carries what made its inputs: the pixel scale of images (pixel / pixel_max), a
table's category columns one-hot encoded (OneHotEncoder of ai.onnx.ml, one string input per
category column: an unknown category fails, as in nbnet) and its standardisation ((x - mean) /
std, and predictions turned back into the targets' units).
"""

import numpy as np

ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": "Identity", "softmax": "Softmax",
               "exp": "Exp"}
SKLEARN_ACTIVATIONS = {"logistic": "sigmoid", "tanh": "tanh", "relu": "relu", "identity": "identity",
                       "softmax": "softmax", "exp": "exp"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx extra: pip install 'nbnet[onnx]'") from None
    return onnx


class Graph:
    """Nodes and initializers of an ONNX graph, added as skl2onnx's container adds them
    (add_node, add_initializer), so that one forward-pass builder serves both: `nbnet export`
    (this class) and the skl2onnx converters (skl2onnx's container)."""

    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def add_node(self, op_type, inputs, outputs, name=None, op_domain="", **attributes):
        helper = _onnx().helper
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name or self.name(op_type),
                                           domain=op_domain or None, **attributes))

    def add_initializer(self, name, onnx_type, shape, values):
        helper = _onnx().helper
        if onnx_type == _onnx().TensorProto.STRING:
            self.initializers.append(helper.make_tensor(name, onnx_type, shape, list(values)))
        else:
            self.initializers.append(helper.make_tensor(name, onnx_type, shape, np.asarray(values).ravel().tolist()))


def tensor_type(dtype):
    """The ONNX element type of a NumPy float dtype."""
    return _onnx().TensorProto.DOUBLE if np.dtype(dtype) == np.float64 else _onnx().TensorProto.FLOAT


def forward_pass(graph, names, x, weights, biases, activation, output, dtype):
    """Add the forward pass of a network (weights[m] is W^(m+1), (n_out, n_in)) reading the
    tensor named x; return the name of a^L. names(stem) makes a unique name."""
    element = tensor_type(dtype)
    a = x
    for m, (W, b) in enumerate(zip(weights, biases)):
        W_t, b_name, product, z = names("W_t"), names("b"), names("Wa"), names("z")
        graph.add_initializer(W_t, element, [W.shape[1], W.shape[0]], np.asarray(W, dtype).T)  # (a W^T: rows are samples)
        graph.add_initializer(b_name, element, [1, len(b)], np.asarray(b, dtype))
        graph.add_node("MatMul", [a, W_t], product, name=names("MatMul"))
        graph.add_node("Add", [product, b_name], z, name=names("Add"))
        f = activation if m < len(weights) - 1 else output
        a = names("a")
        graph.add_node(ACTIVATIONS[f], z, a, name=names(ACTIVATIONS[f]), **({"axis": 1} if f == "softmax" else {}))
    return a


def affine(graph, names, x, shift, scale, dtype, inverse=False):
    """(x - shift) / scale, or with inverse x * scale + shift; returns the result's name."""
    element = tensor_type(dtype)
    shift_name, scale_name, middle, out = names("shift"), names("scale"), names("t"), names("scaled")
    shift, scale = np.atleast_1d(np.asarray(shift, dtype)), np.atleast_1d(np.asarray(scale, dtype))
    graph.add_initializer(shift_name, element, [1, len(shift)], shift)
    graph.add_initializer(scale_name, element, [1, len(scale)], scale)
    if inverse:
        graph.add_node("Mul", [x, scale_name], middle, name=names("Mul"))
        graph.add_node("Add", [middle, shift_name], out, name=names("Add"))
    else:
        graph.add_node("Sub", [x, shift_name], middle, name=names("Sub"))
        graph.add_node("Div", [middle, scale_name], out, name=names("Div"))
    return out


def class_labels(graph, names, probabilities, classes, label_output, multilabel=False, dtype=np.float32):
    """label_output = the class of the largest probability (ArgMax, then ArrayFeatureExtractor
    on the classes: int64 or strings), or for multi-label outputs 1 where a probability exceeds
    1/2 (int64)."""
    onnx = _onnx()
    if multilabel:  # (Greater, not ai.onnx.ml's Binarizer, which onnxruntime runs on float32 only)
        half, over = names("half"), names("over")
        graph.add_initializer(half, tensor_type(dtype), [], [0.5])
        graph.add_node("Greater", [probabilities, half], over, name=names("Greater"))
        graph.add_node("Cast", over, label_output, name=names("Cast"), to=onnx.TensorProto.INT64)
        return
    classes = np.asarray(classes)
    numeric = np.issubdtype(classes.dtype, np.number) or classes.dtype == np.bool_
    classes_name, best, picked = names("classes"), names("argmax"), names("picked")
    graph.add_initializer(classes_name, onnx.TensorProto.INT64 if numeric else onnx.TensorProto.STRING,
                          [len(classes)], classes.astype(np.int64) if numeric else
                          np.array([str(c).encode("utf-8") for c in classes]))
    graph.add_node("ArgMax", probabilities, best, name=names("ArgMax"), axis=1)
    graph.add_node("ArrayFeatureExtractor", [classes_name, best], picked, name=names("ArrayFeatureExtractor"),
                   op_domain="ai.onnx.ml")
    shape = names("shape")
    graph.add_initializer(shape, onnx.TensorProto.INT64, [1], [-1])
    graph.add_node("Reshape", [picked, shape], label_output, name=names("Reshape"))


# ----------------------------------------------------------------------------- skl2onnx
def _estimator_network(estimator):
    """(weights as (n_out, n_in), biases, hidden activation, output activation) of a fitted estimator."""
    weights = [np.asarray(c).T for c in estimator.coefs_]
    return (weights, [np.asarray(b) for b in estimator.intercepts_], SKLEARN_ACTIVATIONS[estimator.activation],
            SKLEARN_ACTIVATIONS[estimator.out_activation_])


def _input_dtype(operator):
    from skl2onnx.common.data_types import DoubleTensorType

    return np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType) else np.float32


def _cast_input(scope, operator, container, dtype):
    name = scope.get_unique_variable_name("cast_input")
    container.add_node("Cast", operator.inputs[0].full_name, name, name=scope.get_unique_operator_name("Cast"),
                       to=tensor_type(dtype))
    return name


def convert_classifier(scope, operator, container):
    """skl2onnx's converter of nbnet.sklearn.MLPClassifier: outputs (label, probabilities)."""
    estimator, dtype = operator.raw_operator, _input_dtype(operator)
    names = scope.get_unique_variable_name
    weights, biases, activation, output = _estimator_network(estimator)
    a = forward_pass(container, names, _cast_input(scope, operator, container, dtype), weights, biases, activation,
                     output, dtype)
    probabilities = operator.outputs[1].full_name
    if output == "sigmoid" and weights[-1].shape[0] == 1:  # binary: P(class 0) = 1 - P(class 1)
        one, negative = names("one"), names("negative")
        container.add_initializer(one, tensor_type(dtype), [], [1.0])
        container.add_node("Sub", [one, a], negative, name=scope.get_unique_operator_name("Sub"))
        container.add_node("Concat", [negative, a], probabilities, name=scope.get_unique_operator_name("Concat"),
                           axis=1)
    else:
        container.add_node("Identity", a, probabilities, name=scope.get_unique_operator_name("Identity"))
    multilabel = estimator._binarizer().y_type_ == "multilabel-indicator"
    class_labels(container, names, probabilities, estimator.classes_, operator.outputs[0].full_name, multilabel, dtype)


def convert_regressor(scope, operator, container):
    """skl2onnx's converter of nbnet.sklearn.MLPRegressor: predictions (n, n_outputs)."""
    estimator, dtype = operator.raw_operator, _input_dtype(operator)
    weights, biases, activation, output = _estimator_network(estimator)
    a = forward_pass(container, scope.get_unique_variable_name, _cast_input(scope, operator, container, dtype),
                     weights, biases, activation, output, dtype)
    container.add_node("Identity", a, operator.outputs[0].full_name, name=scope.get_unique_operator_name("Identity"))


def classifier_shapes(operator):
    """Output types of the classifier: labels (int64 or strings; (n, labels) for multi-label y)
    and probabilities in the input's float type."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    estimator = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    classes = np.asarray(estimator.classes_)
    multilabel = estimator._binarizer().y_type_ == "multilabel-indicator"
    numeric = np.issubdtype(classes.dtype, np.number) or classes.dtype == np.bool_
    label = Int64TensorType if numeric or multilabel else StringTensorType
    operator.outputs[0].type = label([n, len(classes)] if multilabel else [n])
    operator.outputs[1].type = operator.inputs[0].type.__class__([n, len(classes)])


def regressor_shapes(operator):
    """Output type of the regressor: (n, n_outputs) in the input's float type."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    n = operator.inputs[0].get_first_dimension()
    kind = DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType) else FloatTensorType
    operator.outputs[0].type = kind([n, operator.raw_operator.n_outputs_])


def register():
    """Register nbnet's estimators with skl2onnx (done when this module is imported)."""
    try:
        from skl2onnx import update_registered_converter
    except ImportError:
        raise ImportError("converting estimators to ONNX needs the onnx extra: pip install 'nbnet[onnx]'") from None
    from .sklearn import MLPClassifier, MLPRegressor

    update_registered_converter(MLPClassifier, "NbnetMLPClassifier", classifier_shapes, convert_classifier,
                                options={"zipmap": [True, False, "columns"], "nocl": [True, False],
                                         "output_class_labels": [False, True]})
    update_registered_converter(MLPRegressor, "NbnetMLPRegressor", regressor_shapes, convert_regressor)


# ----------------------------------------------------------------------------- nbnet train's models
def export_model(path, onnx_path):
    """Write the ONNX graph of the model file `path` (written by nbnet train or Network.save) to
    onnx_path, atomically; returns (input names, output names). Inputs: "pixels" for a model
    of images (in the data set's own scale, 0..16 for the digits, 0..255 for MNIST), "inputs" for
    a table of numbers, or one input per column of a table with categories (a string column for
    each category column). Outputs: "label" and "probabilities" of a classifier, "prediction"
    of a model of numeric targets."""
    from .files import atomic_write
    from .network import Network
    from .tables import Columns

    onnx = _onnx()
    helper = onnx.helper
    net, metadata = Network.load_with_metadata(path)
    inputs_spec = metadata.get("inputs") or {}
    graph, dtype = Graph(), net.dtype
    element = tensor_type(dtype)
    names = graph.name
    graph_inputs = []
    columns = Columns.from_dict(inputs_spec["columns"]) if inputs_spec.get("columns") else None
    if columns is not None and columns.categories:
        x = _encoded_columns(graph, names, columns, dtype, graph_inputs)
    else:
        input_name = "pixels" if "image_shape" in inputs_spec else "inputs"
        graph_inputs.append(helper.make_tensor_value_info(input_name, element, [None, net.sizes[0]]))
        x = input_name
    if "pixel_max" in inputs_spec:
        x = affine(graph, names, x, np.zeros(net.sizes[0]), np.full(net.sizes[0], inputs_spec["pixel_max"]), dtype)
    if net.scaling is not None:
        x = affine(graph, names, x, net.scaling.input_mean, net.scaling.input_std, dtype)
    a = forward_pass(graph, names, x, net.weights, net.biases, net.activation, net.output, dtype)
    if "targets" in inputs_spec:  # numeric targets
        if net.scaling is not None and net.scaling.target_mean is not None:
            a = affine(graph, names, a, net.scaling.target_mean, np.full(net.sizes[-1], net.scaling.target_std), dtype,
                       inverse=True)
        graph.add_node("Identity", a, "prediction")
        outputs = [helper.make_tensor_value_info("prediction", element, [None, net.sizes[-1]])]
    else:
        graph.add_node("Identity", a, "probabilities")
        names_of_classes = inputs_spec.get("class_names")
        classes = np.array(names_of_classes) if names_of_classes else np.arange(net.sizes[-1])
        class_labels(graph, names, "probabilities", classes, "label", dtype=dtype)
        label_type = onnx.TensorProto.STRING if names_of_classes else onnx.TensorProto.INT64
        outputs = [helper.make_tensor_value_info("label", label_type, [None]),
                   helper.make_tensor_value_info("probabilities", element, [None, net.sizes[-1]])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "nbnet", graph_inputs, outputs, graph.initializers),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="nbnet")
    model.doc_string = f"nbnet model {path}: network {net.sizes}, {net.activation}/{net.output}"
    onnx.checker.check_model(model)
    atomic_write(onnx_path, lambda temporary: onnx.save(model, temporary))
    return [i.name for i in graph_inputs], [o.name for o in outputs]


def _encoded_columns(graph, names, columns, dtype, graph_inputs):
    """The inputs of a table with categories: one (n, 1) input per column, float for a number,
    string for a category (one-hot encoded here by OneHotEncoder, which fails on a category it
    does not know), concatenated in the model's feature order; returns the encoded tensor's name."""
    onnx = _onnx()
    helper = onnx.helper
    parts = []
    for column in columns.names:
        if column in columns.categories:
            graph_inputs.append(helper.make_tensor_value_info(column, onnx.TensorProto.STRING, [None, 1]))
            coded, flat, shape = names("onehot"), names("flat"), names("shape")
            graph.add_node("OneHotEncoder", column, coded, op_domain="ai.onnx.ml",
                           cats_strings=list(columns.categories[column]), zeros=0)
            graph.add_initializer(shape, onnx.TensorProto.INT64, [2], [-1, len(columns.categories[column])])
            graph.add_node("Reshape", [coded, shape], flat)
            cast = names("cast")
            graph.add_node("Cast", flat, cast, to=tensor_type(dtype))
            parts.append(cast)
        else:
            graph_inputs.append(helper.make_tensor_value_info(column, tensor_type(dtype), [None, 1]))
            parts.append(column)
    encoded = names("encoded")
    graph.add_node("Concat", parts, encoded, axis=1)
    return encoded


try:  # (importing this module registers the converters when skl2onnx is there)
    register()
except ImportError:
    pass
