"""Built-in models, each with a manual gradient calculation written in numpy, independent of torch.

Register a model with the `model` decorator; give it a manual calculation with ``@spec.manual``::

    @model("sum-xy-plus-z", "c = sum(x*y + z)", seed=0)
    def sum_xy_plus_z(seed, dtype): ...

    @sum_xy_plus_z.manual
    def _(v, seed): return {"x": v["y"], ...}

A build function makes its tensors and modules, then returns `Made`: them and the function that
computes the loss from them. Finite differences then re-run only that function, on the same
tensors every time (`ModelSpec.make`), and need no function mode to find them again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .backends import linear
from .buildresult import BuildResult
from .errors import GradvizError

__all__ = ["ModelSpec", "Made", "MODELS", "model", "repeated_layer_manual"]


@dataclass
class Made:
    """A built-in model's tensors and modules, and the function that computes its loss from them.

    The contract that lets its re-runs go without a function mode, and with grad off: `loss`
    reads these tensors (and its module's parameters and buffers), gives them no new values
    before it reads them, is deterministic, and computes the same value with grad off.

    Attributes
    ----------
    loss : callable
        ``loss() -> Tensor``: runs the model on the tensors below; each call makes a new graph.
    leaves : dict of str to Tensor
        The named tensors (as `BuildResult.leaves`).
    module : torch.nn.Module or None
        The model's module (as `BuildResult.module`).
    """

    loss: Callable[[], torch.Tensor]
    leaves: dict
    module: torch.nn.Module | None = None

    def run(self) -> BuildResult:
        """Compute the loss once, as a `BuildResult`."""
        return BuildResult(self.loss(), self.leaves, self.module)

    def tensors(self) -> list[torch.Tensor]:
        """The tensors it keeps: its leaves, and its module's parameters and buffers."""
        kept = [t for t in self.leaves.values() if isinstance(t, torch.Tensor)]
        if self.module is not None:
            kept += list(self.module.parameters()) + list(self.module.buffers())
        return kept


@dataclass
class ModelSpec:
    """A built-in model: its build function, parameters with defaults, and manual gradients."""

    name: str
    description: str
    build_fn: Callable
    defaults: dict
    help: dict = field(default_factory=dict)
    manual_fn: Callable | None = None

    def build(self, dtype=torch.float32, **params) -> BuildResult:
        """Build the model's loss with `params` in floating dtype `dtype`."""
        made = self.make(dtype=dtype, **params)
        return made.run() if isinstance(made, Made) else made

    def make(self, dtype=torch.float32, **params) -> Made | BuildResult:
        """Make the model's tensors and modules with `params` in `dtype`, without running it.

        A `Made` runs the model with ``.run()``, as often as needed, on the same tensors; a build
        function that returns a `BuildResult` has already run it.
        """
        return self.build_fn(dtype=dtype, **params)

    @property
    def manual(self) -> Callable | None:
        """``manual(leaf_values, **params) -> {leaf name: gradient}`` (numpy), or None."""
        return self.manual_fn

    def set_manual(self, fn: Callable) -> Callable:
        self.manual_fn = fn
        return fn

    def resolve_params(self, given: dict) -> dict:
        """Merge `given` into the defaults, converting text values (from the command line) to each default's type."""
        out = dict(self.defaults)
        for key, value in given.items():
            if key not in self.defaults:
                raise GradvizError(f"model {self.name} has no parameter {key!r}",
                                   hint=f"its parameters: {', '.join(f'{k}={v}' for k, v in self.defaults.items())}")
            out[key] = _convert(self.name, key, value, self.defaults[key])
        return out


def _convert(model_name: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or default is None and value.replace(".", "", 1).lstrip("-").isdigit():
            return float(value)
    except ValueError:
        raise GradvizError(f"parameter {key} of {model_name} takes a {type(default).__name__}, not {value!r}",
                           hint=f"for example --param {key}={default}") from None
    return value


MODELS: dict[str, ModelSpec] = {}


class _Registered:
    """What the `model` decorator returns: the build function, with ``.manual`` to attach manual gradients."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def manual(self, fn):
        self.spec.set_manual(fn)
        return fn

    def __call__(self, **kwargs):
        return self.spec.build(**kwargs)


def model(name: str, description: str, help: dict | None = None, **defaults) -> Callable:
    """Register a built-in model under `name` with parameter `defaults`."""

    def deco(fn):
        spec = ModelSpec(name, description, fn, defaults, help or {})
        MODELS[name] = spec
        return _Registered(spec)

    return deco


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------
@model("sum-xy-plus-z", "c = sum(x*y + z) with x, y, z of shape (3, 4)", seed=0)
def sum_xy_plus_z(seed, dtype):
    g = _gen(seed)
    x, y, z = (torch.randn(3, 4, generator=g, dtype=dtype).requires_grad_() for _ in range(3))
    return Made(lambda: (x * y + z).sum(), {"x": x, "y": y, "z": z})


@sum_xy_plus_z.manual
def _(v, seed):
    # dc/dx = y, dc/dy = x, dc/dz = 1 (every element appears once in the sum)
    x, y, z = (v[k].astype(np.float64) for k in "xyz")
    return {"x": y, "y": x, "z": np.ones_like(z)}


# ---------------------------------------------------------------------------------------------
@model("linear-function", "a custom LinearFunction (hand-written backward) on torch, cpp or cuda; loss = sum(output)",
       help={"backend": "torch, cpp or cuda"}, seed=0, backend="torch", batch=1, in_features=3, out_features=4)
def linear_function(seed, dtype, backend, batch, in_features, out_features):
    g = _gen(seed)
    device = "cuda" if backend == "cuda" and torch.cuda.is_available() else "cpu"
    input = torch.randn(batch, in_features, generator=g, dtype=dtype).to(device)
    weight = torch.randn(out_features, in_features, generator=g, dtype=dtype).to(device).requires_grad_()
    bias = torch.randn(out_features, generator=g, dtype=dtype).to(device).requires_grad_()

    def loss():
        output, _ran = linear(input, weight, bias, backend=backend)
        return output.sum()

    return Made(loss, {"input": input, "weight": weight, "bias": bias})


@linear_function.manual
def _(v, seed, backend, batch, in_features, out_features):
    # loss = sum(output): every output element has gradient 1
    x = v["input"].astype(np.float64)
    w = v["weight"].astype(np.float64)
    g = np.ones((x.shape[0], w.shape[0]))
    return {"input": None, "weight": g.T @ x, "bias": g.sum(0)}


# ---------------------------------------------------------------------------------------------
class RepeatedLayerNet(torch.nn.Module):
    """One ``nn.Linear(n, n, bias=False)`` applied `k` times, with an optional tanh between uses."""

    def __init__(self, n: int, k: int, tanh: bool):
        super().__init__()
        self.layer = torch.nn.Linear(n, n, bias=False)
        self.k = k
        self.tanh = tanh

    def forward(self, x):
        h = x
        for i in range(self.k):
            h = self.layer(h)
            if self.tanh and i < self.k - 1:
                h = torch.tanh(h)
        return h


@model("repeated-layer", "one nn.Linear reused k times (x=10, label=5, MSE loss); n>1 and tanh for the general form",
       help={"k": "uses of the layer", "n": "in/out size", "tanh": "tanh between uses",
             "w": "initial weight for n=1 (default: random from seed)"},
       seed=0, k=2, n=1, tanh=False, x=10.0, label=5.0, w=None)
def repeated_layer(seed, dtype, k, n, tanh, x, label, w):
    if k < 1 or n < 1:
        raise GradvizError("repeated-layer needs k >= 1 and n >= 1", hint="for example --param k=3")
    g = _gen(seed)
    torch.manual_seed(int(seed))
    net = RepeatedLayerNet(n, k, tanh).to(dtype)
    with torch.no_grad():
        if w is not None:
            net.layer.weight.fill_(float(w))
        else:
            net.layer.weight.copy_(torch.empty(n, n, dtype=dtype).uniform_(-1, 1, generator=g))
    if n == 1:
        xt = torch.full((1, 1), float(x), dtype=dtype)
    else:
        xt = torch.randn(1, n, generator=g, dtype=dtype)
    yt = torch.full((1, n), float(label), dtype=dtype)
    return Made(lambda: torch.nn.functional.mse_loss(net(xt), yt), {"x": xt, "label": yt}, net)


def repeated_layer_manual(W: np.ndarray, x: np.ndarray, label: np.ndarray, k: int, tanh: bool) -> list[np.ndarray]:
    """Per-use gradients of the weight, use 1 first, by numpy backprop through the unrolled chain."""
    W, x, label = (np.asarray(a, dtype=np.float64) for a in (W, x, label))
    hs = [x]
    for i in range(k):
        a = hs[-1] @ W.T
        hs.append(np.tanh(a) if tanh and i < k - 1 else a)
    # d mean((h - y)^2) / dh = 2 (h - y) / numel
    grad = 2.0 * (hs[-1] - label) / label.size
    per_use = [None] * k
    for i in reversed(range(k)):
        if tanh and i < k - 1:
            # through tanh: d tanh(a)/da = 1 - tanh(a)^2
            grad = grad * (1.0 - hs[i + 1] ** 2)
        # a_i = h_{i-1} @ W.T: this use's share of dL/dW, and the gradient passed to the use before
        per_use[i] = grad.T @ hs[i]
        grad = grad @ W
    return per_use


@repeated_layer.manual
def _(v, seed, k, n, tanh, x, label, w):
    per_use = repeated_layer_manual(v["layer.weight"], v["x"], v["label"], k, tanh)
    # the shared weight's gradient is the sum over every use
    return {"layer.weight": np.sum(per_use, axis=0), "x": None, "label": None}


# ---------------------------------------------------------------------------------------------
class UnrolledRNN(torch.nn.Module):
    """An ``nn.RNNCell`` (tanh) applied over T time steps."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = torch.nn.RNNCell(input_size, hidden_size, nonlinearity="tanh")

    def forward(self, xs, h):
        for t in range(xs.shape[0]):
            h = self.cell(xs[t], h)
        return h


@model("rnn-unrolled", "a tanh RNN cell unrolled over T steps; loss = MSE of the last hidden state",
       help={"T": "time steps", "hidden": "hidden size", "inputs": "input size", "batch": "batch size"},
       seed=0, T=5, inputs=3, hidden=4, batch=2)
def rnn_unrolled(seed, dtype, T, inputs, hidden, batch):
    g = _gen(seed)
    torch.manual_seed(int(seed))
    net = UnrolledRNN(inputs, hidden).to(dtype)
    xs = torch.randn(T, batch, inputs, generator=g, dtype=dtype)
    h0 = torch.zeros(batch, hidden, dtype=dtype)
    target = torch.randn(batch, hidden, generator=g, dtype=dtype)
    return Made(lambda: torch.nn.functional.mse_loss(net(xs, h0), target), {"xs": xs, "h0": h0, "target": target},
                net)


@rnn_unrolled.manual
def _(v, seed, T, inputs, hidden, batch):
    Wih, Whh, bih, bhh = (v[f"cell.{k}"].astype(np.float64) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    xs, h0, target = (v[k].astype(np.float64) for k in ("xs", "h0", "target"))
    # the input's share of every step's pre-activation at once: xs[t] @ Wih.T + bih + bhh
    drive = xs @ Wih.T + (bih + bhh)
    hs = np.empty((T + 1,) + h0.shape)
    hs[0] = h0
    for t in range(T):
        hs[t + 1] = np.tanh(drive[t] + hs[t] @ Whh.T)
    # d mean((h_T - target)^2) / dh_T
    gh = 2.0 * (hs[-1] - target) / target.size
    # backprop through time: the gradient at each step's pre-activation, ga[t]
    ga = np.empty((T,) + h0.shape)
    for t in reversed(range(T)):
        ga[t] = gh * (1.0 - hs[t + 1] ** 2)
        gh = ga[t] @ Whh
    # every step adds its share to the shared weights: sums over the steps and the batch
    gb = ga.sum(axis=(0, 1))
    grads = {"weight_ih": np.einsum("tbi,tbj->ij", ga, xs), "weight_hh": np.einsum("tbi,tbj->ij", ga, hs[:-1]),
             "bias_ih": gb, "bias_hh": gb.copy()}
    out = {f"cell.{k}": g for k, g in grads.items()}
    out.update({"xs": None, "h0": None, "target": None})
    return out


# ---------------------------------------------------------------------------------------------
class MLP(torch.nn.Module):
    """Two linear layers with a ReLU between them."""

    def __init__(self, inputs: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(inputs, hidden)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@model("mlp", "a two-layer MLP with ReLU and cross-entropy on a small batch",
       help={"batch": "batch size", "inputs": "input features", "hidden": "hidden units", "classes": "classes"},
       seed=0, batch=5, inputs=4, hidden=8, classes=3)
def mlp(seed, dtype, batch, inputs, hidden, classes):
    g = _gen(seed)
    torch.manual_seed(int(seed))
    net = MLP(inputs, hidden, classes).to(dtype)
    x = torch.randn(batch, inputs, generator=g, dtype=dtype)
    labels = torch.randint(0, classes, (batch,), generator=g)
    return Made(lambda: torch.nn.functional.cross_entropy(net(x), labels), {"x": x, "labels": labels}, net)


@mlp.manual
def _(v, seed, batch, inputs, hidden, classes):
    W1, b1, W2, b2 = (v[k].astype(np.float64) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    x = v["x"].astype(np.float64)
    labels = v["labels"].astype(np.int64)
    a1 = x @ W1.T + b1
    h1 = np.maximum(a1, 0.0)
    logits = h1 @ W2.T + b2
    # softmax cross-entropy: d loss / d logits = (softmax - onehot) / batch
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(labels)), labels] = 1.0
    g_logits = (p - onehot) / len(labels)
    g_h1 = g_logits @ W2
    # relu passes the gradient where its input was positive
    g_a1 = g_h1 * (a1 > 0)
    return {"fc1.weight": g_a1.T @ x, "fc1.bias": g_a1.sum(0), "fc2.weight": g_logits.T @ h1,
            "fc2.bias": g_logits.sum(0), "x": None, "labels": None}
