"""Rules of losses and nn nodes."""
from __future__ import annotations

import itertools

import numpy as np

from .registry import _g, _s, _slots, rule


# ---------------------------------------------------------------------------------- losses, nn


_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


@rule("MseLossBackward0")
def _mse(inp):
    x, t, g = _s(inp, "self"), _s(inp, "target"), _g(inp)
    red = _REDUCTIONS[_s(inp, "reduction")]
    scale = 2.0 / (np.broadcast(x, t).size if red == "mean" else 1.0)
    d = scale * (x - t) * g
    # L = (mean|sum) (x - t)^2 : dL/dx = 2 (x - t) [/ n] ; dL/dt = -dL/dx
    return _slots(inp, lambda: d, lambda: -d)


@rule("SoftmaxBackward0")
def _softmax(inp):
    y, g, dim = _s(inp, "result"), _g(inp), _s(inp, "dim")
    # y = softmax(x): dx = y * (g - sum(g * y, dim))
    return _slots(inp, lambda: y * (g - (g * y).sum(axis=dim, keepdims=True)))


@rule("LogSoftmaxBackward0")
def _log_softmax(inp):
    y, g, dim = _s(inp, "result"), _g(inp), _s(inp, "dim")
    # y = log_softmax(x): dx = g - softmax(x) * sum(g, dim), softmax(x) = exp(y)
    return _slots(inp, lambda: g - np.exp(y) * g.sum(axis=dim, keepdims=True))


@rule("NllLossBackward0", "NllLoss2DBackward0")
def _nll(inp):
    x = _s(inp, "self")
    t = np.asarray(inp.saved["target"], dtype=np.int64)
    w = _s(inp, "weight")
    ignore = _s(inp, "ignore_index")
    red = _REDUCTIONS[_s(inp, "reduction")]
    g = _g(inp)
    cdim = 0 if x.ndim == 1 else 1
    n_cls = x.shape[cdim]
    w = np.ones(n_cls) if w is None else w
    valid = t != ignore
    tc = np.where(valid, t, 0)
    wt = np.where(valid, w[tc], 0.0)  # weight of each sample's target class (0 if ignored)
    # L_i = -w[t_i] x[i, t_i] : dL/dx[i, t_i] = -w[t_i] * g_i  (mean: divided by sum of w[t_i])
    if red == "mean":
        total = wt.sum()
        coef = -wt * g / total if total != 0 else np.zeros_like(wt)
    else:
        coef = -wt * g
    out = np.zeros(x.shape)
    moved = np.moveaxis(out, cdim, -1)
    np.put_along_axis(moved, tc[..., None], np.asarray(coef)[..., None], axis=-1)
    return _slots(inp, lambda: out)


@rule("EmbeddingBackward0")
def _embedding(inp):
    if _s(inp, "sparse"):
        return [None] * len(inp.input_meta)  # torch's gradient is a sparse tensor
    idx = np.asarray(inp.saved["indices"], dtype=np.int64).ravel()
    g = _g(inp)
    g = g.reshape(idx.size, g.shape[-1])
    pad = _s(inp, "padding_idx")
    if _s(inp, "scale_grad_by_freq"):
        counts = np.bincount(idx, minlength=_s(inp, "weight_sym_argsize_0"))
        g = g / counts[idx][:, None]
    keep = idx != pad  # the padding row never gets a gradient
    out = np.zeros((_s(inp, "weight_sym_argsize_0"), g.shape[-1]))
    # out = W[idx]: scatter-add each g row into row idx of dW
    np.add.at(out, idx[keep], g[keep])
    return _slots(inp, lambda: out)


def _norm_backward(g, xhat, rstd, axes):
    # y = xhat * w, xhat = (x - mean) * rstd with mean/var over `axes`:
    # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    return rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))


@rule("NativeLayerNormBackward0")
def _layer_norm(inp):
    x, g = _s(inp, "input"), _g(inp)
    k = len(_s(inp, "normalized_shape"))
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    # eps is not saved, so the forward statistics (mean = result1, rstd = result2) are taken as saved
    mean, rstd = _s(inp, "result1"), _s(inp, "result2")
    w = _s(inp, "weight")
    xhat = (x - mean) * rstd
    gx = g * w if w is not None else g
    # dW = sum over leading dims of g * xhat ; db = sum of g
    return _slots(inp, lambda: _norm_backward(gx, xhat, rstd, axes),
                  lambda: (g * xhat).sum(axis=lead), lambda: g.sum(axis=lead))


@rule("NativeBatchNormBackward0")
def _batch_norm(inp):
    x, g, eps = _s(inp, "input"), _g(inp), _s(inp, "eps")
    axes = (0,) + tuple(range(2, x.ndim))
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    w = _s(inp, "weight")
    wb = 1.0 if w is None else w.reshape(cshape)
    if _s(inp, "training"):
        # batch statistics, recomputed: mean and biased variance over (N, *spatial) per channel
        mean = x.mean(axis=axes, keepdims=True)
        rstd = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
        xhat = (x - mean) * rstd
        dx = lambda: _norm_backward(g * wb, xhat, rstd, axes)  # noqa: E731
    else:
        # eval: y = (x - running_mean) / sqrt(running_var + eps) * w + b is affine in x
        rstd = 1.0 / np.sqrt(_s(inp, "running_var").reshape(cshape) + eps)
        xhat = (x - _s(inp, "running_mean").reshape(cshape)) * rstd
        dx = lambda: g * wb * rstd  # noqa: E731
    # dW = sum g * xhat ; db = sum g (per channel)
    return _slots(inp, dx, lambda: (g * xhat).sum(axis=axes), lambda: g.sum(axis=axes))


@rule("ConvolutionBackward0")
def _convolution(inp):
    x, w, g = _s(inp, "input"), _s(inp, "weight"), _g(inp)
    stride, pad, dil = _s(inp, "stride"), _s(inp, "padding"), _s(inp, "dilation")
    groups, transposed = _s(inp, "groups"), _s(inp, "transposed")
    nsp = x.ndim - 2
    stride, pad, dil = (tuple(v) * (nsp if len(v) == 1 else 1) for v in (stride, pad, dil))
    ksize = w.shape[2:]
    N = x.shape[0]
    G = groups
    dx = np.zeros(x.shape)
    dw = np.zeros(w.shape)
    if not transposed:
        # y[n, o, p] = sum_{c, k} w[o, c, k] * xpad[n, c, p*stride + k*dilation]  (per group)
        # dxpad[n, c, p*s + k*d] += g[n, o, p] w[o, c, k] ; dw[o, c, k] = sum_{n, p} g[n, o, p] xpad[n, c, p*s + k*d]
        out_sp = g.shape[2:]
        xpad = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
        dxpad = np.zeros(xpad.shape)
        cin_g, cout_g = x.shape[1] // G, w.shape[0] // G
        gg = g.reshape(N, G, cout_g, -1)
        wg = w.reshape(G, cout_g, cin_g, *ksize)
        for k in itertools.product(*(range(s) for s in ksize)):
            sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (out_sp[i] - 1) + 1, stride[i])
                       for i in range(nsp))
            xs = xpad[(slice(None), slice(None)) + sl].reshape(N, G, cin_g, -1)
            dw[(slice(None), slice(None)) + k] = np.einsum("ngop,ngcp->goc", gg, xs).reshape(G * cout_g, cin_g)
            contrib = np.einsum("ngop,goc->ngcp", gg, wg[(slice(None),) * 3 + k])
            dxpad[(slice(None), slice(None)) + sl] += contrib.reshape(N, x.shape[1], *out_sp)
        dx = dxpad[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(pad, x.shape[2:]))]
    else:
        # transposed: ypad[n, o, p*s + k*d] += x[n, c, p] w[c, o, k], y = ypad cropped by padding
        # dx[n, c, p] = sum_{o, k} gpad[n, o, p*s + k*d] w[c, o, k] ; dw[c, o, k] = sum_{n, p} x[n, c, p] gpad[...]
        in_sp = x.shape[2:]
        gpad = np.pad(g, [(0, 0), (0, 0)] + [(p, p) for p in pad])
        cin_g, cout_g = x.shape[1] // G, w.shape[1]
        xg = x.reshape(N, G, cin_g, -1)
        wg = w.reshape(G, cin_g, cout_g, *ksize)
        for k in itertools.product(*(range(s) for s in ksize)):
            sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (in_sp[i] - 1) + 1, stride[i])
                       for i in range(nsp))
            gs = gpad[(slice(None), slice(None)) + sl].reshape(N, G, cout_g, -1)
            dw[(slice(None), slice(None)) + k] = np.einsum("ngcp,ngop->gco", xg, gs).reshape(G * cin_g, cout_g)
            dx += np.einsum("ngop,gco->ngcp", gs, wg[(slice(None),) * 3 + k]).reshape(x.shape)
    # bias: db[o] = sum over batch and space of g
    return _slots(inp, lambda: dx, lambda: dw, lambda: g.sum(axis=(0,) + tuple(range(2, g.ndim))))


@rule("LinearFunctionBackward")
def _linear_function(inp):
    # output = x @ W^T + b: d/dx = g @ W ; d/dW = g^T @ x ; d/db = sum of g over the batch rows
    g = _g(inp)
    x, w = _s(inp, "saved_tensors[0]"), _s(inp, "saved_tensors[1]")
    return _slots(inp, lambda: g @ w, lambda: g.T @ x, lambda: g.sum(0))
