"""Rules of elementwise nodes: arithmetic and activations."""
from __future__ import annotations

import math

import numpy as np

from .registry import _g, _s, _slots, rule


# ------------------------------------------------------------------------------ arithmetic


@rule("AddBackward0")
def _add(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # d(a + alpha*b)/da = 1 ; d/db = alpha
    return _slots(inp, lambda: g, lambda: alpha * g)


@rule("AddBackward1", "SubBackward1")
def _add_scalar(inp):
    # d(a +- c)/da = 1
    return _slots(inp, lambda: _g(inp))


@rule("SubBackward0")
def _sub(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # d(a - alpha*b)/da = 1 ; d/db = -alpha
    return _slots(inp, lambda: g, lambda: -alpha * g)


@rule("RsubBackward0")
def _rsub(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # rsub(a, b) = b - alpha*a : d/da = -alpha ; d/db = 1
    return _slots(inp, lambda: -alpha * g, lambda: g)


@rule("RsubBackward1")
def _rsub_scalar(inp):
    # rsub(a, c) = c - alpha*a : d/da = -alpha
    return _slots(inp, lambda: -_s(inp, "alpha") * _g(inp))


@rule("MulBackward0")
def _mul(inp):
    g = _g(inp)
    # d(a*b)/da = b ; d(a*b)/db = a
    return _slots(inp, lambda: g * _s(inp, "other"), lambda: g * _s(inp, "self"))


@rule("MulBackward1")
def _mul_scalar(inp):
    # d(a*c)/da = c
    return _slots(inp, lambda: _g(inp) * _s(inp, "other"))


@rule("DivBackward0")
def _div(inp):
    g = _g(inp)
    # d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
    return _slots(inp, lambda: g / _s(inp, "other"),
                  lambda: -g * _s(inp, "self") / (_s(inp, "other") ** 2))


@rule("DivBackward1")
def _div_scalar(inp):
    # d(a/c)/da = 1/c
    return _slots(inp, lambda: _g(inp) / _s(inp, "other"))


@rule("DivBackward2")
def _div_mode(inp):
    g = _g(inp)
    if _s(inp, "rounding_mode") is not None:
        # floor/trunc(a/b) is piecewise constant: derivative 0 almost everywhere
        return _slots(inp, lambda: np.zeros_like(g), lambda: np.zeros_like(g))
    return _div(inp)


@rule("DivBackward3")
def _div_scalar_mode(inp):
    g = _g(inp)
    if _s(inp, "rounding_mode") is not None:
        return _slots(inp, lambda: np.zeros_like(g))  # floor/trunc: derivative 0
    return _div_scalar(inp)


@rule("NegBackward0")
def _neg(inp):
    # d(-a)/da = -1
    return _slots(inp, lambda: -_g(inp))


@rule("PowBackward0")
def _pow_scalar_exp(inp):
    g, x, p = _g(inp), _s(inp, "self"), _s(inp, "exponent")
    # d(x^p)/dx = p * x^(p-1)  (0 when p == 0)
    if p == 0:
        return _slots(inp, lambda: np.zeros_like(g))
    return _slots(inp, lambda: g * p * np.power(x, p - 1.0))


@rule("PowBackward1")
def _pow_tensor(inp):
    g, x, p, y = _g(inp), _s(inp, "self"), _s(inp, "exponent"), _s(inp, "result")
    # d(x^p)/dx = p * x^(p-1) (0 where p == 0) ; d(x^p)/dp = x^p * log(x) (0 where x == 0 and p >= 0)
    def dx():
        with np.errstate(all="ignore"):
            return np.where(p == 0, 0.0, g * p * np.power(x, p - 1.0))

    def dp():
        with np.errstate(all="ignore"):
            return g * np.where((x == 0) & (p >= 0), 0.0, y * np.log(x))

    return _slots(inp, dx, dp)


@rule("PowBackward2")
def _pow_scalar_base(inp):
    g, c, y = _g(inp), _s(inp, "self"), _s(inp, "result")
    # d(c^p)/dp = c^p * log(c)  (0 where c == 0 and p >= 0)
    p = _s(inp, "exponent")

    def dp():
        if c == 0:
            return np.where(p >= 0, 0.0, g * y * -np.inf)
        return g * y * math.log(c)

    return _slots(inp, dp)


@rule("ExpBackward0")
def _exp(inp):
    # d(e^x)/dx = e^x = result
    return _slots(inp, lambda: _g(inp) * _s(inp, "result"))


@rule("LogBackward0")
def _log(inp):
    # d(log x)/dx = 1/x
    return _slots(inp, lambda: _g(inp) / _s(inp, "self"))


@rule("SqrtBackward0")
def _sqrt(inp):
    # d(sqrt x)/dx = 1 / (2 sqrt x)
    return _slots(inp, lambda: _g(inp) / (2.0 * _s(inp, "result")))


@rule("RsqrtBackward0")
def _rsqrt(inp):
    # d(x^-1/2)/dx = -1/2 x^-3/2 = -1/2 result^3
    return _slots(inp, lambda: -0.5 * _g(inp) * _s(inp, "result") ** 3)


@rule("ReciprocalBackward0")
def _reciprocal(inp):
    # d(1/x)/dx = -1/x^2 = -result^2
    return _slots(inp, lambda: -_g(inp) * _s(inp, "result") ** 2)


@rule("AbsBackward0")
def _abs(inp):
    # d|x|/dx = sign(x)  (0 at 0)
    return _slots(inp, lambda: _g(inp) * np.sign(_s(inp, "self")))


# ----------------------------------------------------------------------------- activations


@rule("TanhBackward0")
def _tanh(inp):
    # d tanh(x)/dx = 1 - tanh(x)^2
    return _slots(inp, lambda: _g(inp) * (1.0 - _s(inp, "result") ** 2))


@rule("SigmoidBackward0")
def _sigmoid(inp):
    # d s(x)/dx = s(x) (1 - s(x))
    y = _s(inp, "result")
    return _slots(inp, lambda: _g(inp) * y * (1.0 - y))


@rule("ReluBackward0")
def _relu(inp):
    # d relu(x)/dx = 1 where relu(x) > 0 else 0
    return _slots(inp, lambda: _g(inp) * (_s(inp, "result") > 0))


@rule("ThresholdBackward0")
def _threshold(inp):
    # threshold(x, t, v) = x where x > t else v : derivative 1 where x > t
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") > _s(inp, "threshold")))


@rule("HardtanhBackward0")
def _hardtanh(inp):
    x = _s(inp, "self")
    # hardtanh(x) = clamp(x, lo, hi): derivative 1 strictly inside (lo, hi)
    return _slots(inp, lambda: _g(inp) * ((x > _s(inp, "min_val")) & (x < _s(inp, "max_val"))))


@rule("LeakyReluBackward0")
def _leaky_relu(inp):
    x = _s(inp, "self")
    # d leaky_relu(x)/dx = 1 where x > 0 else slope
    return _slots(inp, lambda: _g(inp) * np.where(x > 0, 1.0, _s(inp, "negative_slope")))


def _sigm(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@rule("LogSigmoidBackward0")
def _logsigmoid(inp):
    # d log(s(x))/dx = 1 - s(x) = s(-x)
    return _slots(inp, lambda: _g(inp) * _sigm(-_s(inp, "self")))


@rule("SoftplusBackward0")
def _softplus(inp):
    x, beta, thr = _s(inp, "self"), _s(inp, "beta"), _s(inp, "threshold")
    # softplus(x) = log(1 + e^(beta x)) / beta, linear (= x) where beta x > threshold:
    # derivative s(beta x), or 1 above the threshold
    return _slots(inp, lambda: _g(inp) * np.where(beta * x > thr, 1.0, _sigm(beta * x)))


@rule("SiluBackward0")
def _silu(inp):
    x = _s(inp, "self")
    s = _sigm(x)
    # d(x s(x))/dx = s(x) (1 + x (1 - s(x)))
    return _slots(inp, lambda: _g(inp) * s * (1.0 + x * (1.0 - s)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


@rule("GeluBackward0")
def _gelu(inp):
    x, approx = _s(inp, "self"), _s(inp, "approximate")
    if approx == "tanh":
        # gelu ~ x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        k = math.sqrt(2.0 / math.pi)
        t = np.tanh(k * (x + 0.044715 * x**3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * 0.044715 * x**2)
    else:
        # gelu = x Phi(x): derivative Phi(x) + x phi(x)
        d = 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return _slots(inp, lambda: _g(inp) * d)


@rule("ClampBackward1")
def _clamp(inp):
    x, lo, hi = _s(inp, "self"), _s(inp, "min"), _s(inp, "max")
    # d clamp(x, lo, hi)/dx = 1 where lo <= x <= hi (bounds inclusive) else 0
    mask = np.ones_like(x, dtype=bool)
    if lo is not None:
        mask &= x >= lo
    if hi is not None:
        mask &= x <= hi
    return _slots(inp, lambda: _g(inp) * mask)


@rule("ClampMinBackward0")
def _clamp_min(inp):
    # d max(x, lo)/dx = 1 where x >= lo
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") >= _s(inp, "min")))


@rule("ClampMaxBackward0")
def _clamp_max(inp):
    # d min(x, hi)/dx = 1 where x <= hi
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") <= _s(inp, "max")))


@rule("ClampBackward0")
def _clamp_tensor(inp):
    g, x, lo, hi = _g(inp), _s(inp, "self"), _s(inp, "min"), _s(inp, "max")
    # slots (self, min, max): the gradient goes to whichever of x, lo, hi the output equals
    # (x inside [lo, hi]; lo where x < lo; hi where x > hi; hi wins when lo > hi)
    if lo is not None and hi is not None:
        m_x = (x >= lo) & (x <= hi)
        m_lo = (x < lo) & (lo < hi)
        m_hi = (x > hi) | (hi < lo)
    elif lo is not None:
        m_x, m_lo, m_hi = x >= lo, x < lo, None
    else:
        m_x, m_lo, m_hi = x <= hi, None, x > hi
    return _slots(inp, lambda: g * m_x, lambda: g * m_lo, lambda: g * m_hi)


def _max_min_pair(inp, sign):
    g, a, b = _g(inp), _s(inp, "self"), _s(inp, "other")
    # maximum(a, b): gradient to the larger one, split in half on ties (sign flips for minimum)
    ga = np.where(a == b, g / 2, np.where(sign * (a - b) > 0, g, 0.0))
    gb = np.where(a == b, g / 2, np.where(sign * (b - a) > 0, g, 0.0))
    return _slots(inp, lambda: ga, lambda: gb)


@rule("MaximumBackward0")
def _maximum(inp):
    return _max_min_pair(inp, 1.0)


@rule("MinimumBackward0")
def _minimum(inp):
    return _max_min_pair(inp, -1.0)
