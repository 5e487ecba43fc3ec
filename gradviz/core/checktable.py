"""The check table: one row per check, its status, and the table's text and JSON forms.

Plain data (numpy only, no torch): a table is stored in a ``.gradviz`` document and read back
where the model cannot run. `gradviz.core.checks` fills it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["Check", "CheckTable", "Tolerance", "compare", "compare_many", "PASS", "FAIL", "NO_RULE", "SKIPPED"]

PASS, FAIL, NO_RULE, SKIPPED = "pass", "fail", "no rule", "skipped"


@dataclass(frozen=True)
class Tolerance:
    """Elementwise ``|actual - reference| <= atol + rtol * |reference|``."""

    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"atol={self.atol:.0e} rtol={self.rtol:.0e}"


@dataclass
class Check:
    """One row of the check table."""

    kind: str
    what: str
    reference: str
    status: str
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance: str = ""
    node: int | None = None
    leaf: str | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


@dataclass
class CheckTable:
    """All checks of one recording."""

    rows: list = field(default_factory=list)
    strict: bool = False

    @property
    def failed(self) -> list[Check]:
        return [r for r in self.rows if r.status == FAIL or (self.strict and r.status == NO_RULE)]

    @property
    def ok(self) -> bool:
        """True when no row fails (with `strict`, no row lacks a rule either)."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_json(self) -> dict:
        return {"ok": self.ok, "strict": self.strict, "counts": self.counts(),
                "checks": [r.to_json() for r in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> "CheckTable":
        """The table `to_json` gave (``ok`` and ``counts`` are recomputed, not read)."""
        names = [f.name for f in fields(Check)]
        rows = [Check(**{k: row[k] for k in names if k in row}) for row in data["checks"]]
        return cls(rows=rows, strict=bool(data.get("strict", False)))

    def format(self, width: int = 120) -> str:
        """The table as aligned text, one row per check, and a summary line."""
        head = ("check", "what", "reference", "max abs err", "max rel err", "tolerance", "result")
        lines = [head]
        for r in self.rows:
            status = r.status.upper() if r.status == FAIL else r.status
            if self.strict and r.status == NO_RULE:
                status = "FAIL (no rule)"
            lines.append((r.kind, r.what, r.reference, _fmt(r.max_abs), _fmt(r.max_rel), r.tolerance, status))
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        widths[1] = min(widths[1], 44)
        widths[2] = min(widths[2], 34)
        out = []
        for j, row in enumerate(lines):
            cells = [str(c)[:widths[i]].ljust(widths[i]) for i, c in enumerate(row)]
            out.append("  ".join(cells).rstrip())
            if j == 0:
                out.append("  ".join("-" * w for w in widths))
        # why a row was skipped, failed or sampled: one line each, before the summary line
        notes = [f"  {r.kind} {r.what}: {r.detail.strip().splitlines()[0][:2 * width]}"
                 for r in self.rows if r.detail.strip()]
        if notes:
            out += ["", "notes:", *notes]
        c = self.counts()
        summary = ", ".join(f"{v} {k}" for k, v in sorted(c.items()))
        out.append("")
        out.append(f"{len(self.rows)} checks: {summary} -> {'OK' if self.ok else 'FAILED'}")
        return "\n".join(out)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2e}"


def compare(actual: np.ndarray, reference: np.ndarray, tol: Tolerance) -> tuple[float, float, bool]:
    """Return ``(max abs error, max rel error, within tolerance)`` of two arrays of one shape."""
    # complex values are compared as complex numbers: |actual - reference| is the modulus
    dtype = np.complex128 if np.iscomplexobj(actual) or np.iscomplexobj(reference) else np.float64
    a = np.asarray(actual).astype(dtype)
    b = np.asarray(reference).astype(dtype)
    if a.shape != b.shape:
        if a.size == b.size:
            a = a.reshape(b.shape)
        else:
            return math.inf, math.inf, False
    if a.size == 0:
        return 0.0, 0.0, True
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - b)
    same = None
    if not np.isfinite(err).all():
        # NaN against NaN and inf against the same inf agree; anything else non-finite does not
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not (same | np.isfinite(err)).all():
            return math.inf, math.inf, False
        err = np.where(same, 0.0, err)
        b = np.where(same, 0.0, b)
    rel = err / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    rel = np.where(err == 0, 0.0, rel)
    ok = bool((err <= tol.atol + tol.rtol * np.abs(b)).all())
    return float(err.max()), float(rel.max()), ok


def compare_many(actuals: list, references: list, dtypes: list[str], kind: str) -> list[tuple]:
    """`compare` each pair at its own tolerance, at once: ``(max abs, max rel, ok, tolerance)`` per pair.

    Pair ``i`` is ``compare(actuals[i], references[i], tolerance_for(dtypes[i], kind,
    scale_of(references[i])))``, with the same numbers: real pairs of one size are laid end to end
    in one float64 array, the errors taken elementwise and their maxima per pair by
    ``np.maximum.reduceat`` (a graph's thousands of small gradients cost a few array operations,
    not a dozen per pair). Complex, empty or mismatched pairs go through `compare` one by one.
    """
    out: list = [None] * len(actuals)
    flat_a, flat_b, batched, sizes = [], [], [], []
    for i, (x, y) in enumerate(zip(actuals, references)):
        x, y = np.asarray(x), np.asarray(y)
        if x.size != y.size or x.size == 0 or x.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
            tol = tolerance_for(dtypes[i], kind, scale_of(y))
            out[i] = (*compare(x, y, tol), tol)
            continue
        flat_a.append(x.reshape(-1))
        flat_b.append(y.reshape(-1))
        batched.append(i)
        sizes.append(x.size)
    if not batched:
        return out
    a = np.concatenate(flat_a).astype(np.float64, copy=False)
    b = np.concatenate(flat_b).astype(np.float64, copy=False)
    sizes = np.asarray(sizes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    # the tolerance of each pair: a base per dtype times max(1, largest |reference|), as tolerance_for
    scale = np.maximum.reduceat(np.abs(b), starts)
    s = np.where(scale > 1.0, scale, 1.0)  # (a NaN scale counts as 1, as max(1.0, nan) does)
    base = {}
    for i in batched:
        if dtypes[i] not in base:
            base[dtypes[i]] = tolerance_for(dtypes[i], kind, 1.0)
    atol = np.array([base[dtypes[i]].atol for i in batched]) * s
    rtol = np.array([base[dtypes[i]].rtol for i in batched])
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - b)
    finite = np.isfinite(err)
    broken = np.zeros(len(batched), dtype=bool)
    if not finite.all():
        # NaN against NaN and inf against the same inf agree (error 0); anything else non-finite fails
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        broken = np.logical_or.reduceat(~(same | finite), starts)
        err = np.where(same, 0.0, err)
        b = np.where(same, 0.0, b)
    mag = np.abs(b)
    with np.errstate(invalid="ignore", over="ignore"):  # (inf / inf of a pair already failed above)
        rel = err / np.maximum(mag, np.finfo(np.float64).tiny)
    rel = np.where(err == 0, 0.0, rel)
    within = err <= np.repeat(atol, sizes) + np.repeat(rtol, sizes) * mag
    worst_a = np.maximum.reduceat(err, starts).tolist()
    worst_r = np.maximum.reduceat(rel, starts).tolist()
    good = np.logical_and.reduceat(within, starts).tolist()
    atol, broken = atol.tolist(), broken.tolist()
    for j, i in enumerate(batched):
        tol = Tolerance(atol[j], base[dtypes[i]].rtol)
        out[i] = (math.inf, math.inf, False, tol) if broken[j] else (worst_a[j], worst_r[j], good[j], tol)
    return out


def tolerance_for(dtype: str, kind: str, scale: float) -> Tolerance:
    """The tolerance for a check of `kind` on values of `dtype` whose reference peaks at `scale`."""
    # float64 work is checked tightly; float32 (about 7 digits) gets room for rounding in sums
    s = max(1.0, scale)
    # a complex dtype is checked as tightly as its parts
    dtype = {"complex128": "float64", "complex64": "float32", "complex32": "float16"}.get(dtype, dtype)
    if kind == "finite-diff":
        if dtype == "float64":
            return Tolerance(1e-6 * s, 1e-5)
        return Tolerance(1e-4 * s, 1e-3)
    if dtype == "float64":
        return Tolerance(1e-10 * s, 1e-8)
    if dtype in ("float16", "bfloat16"):
        return Tolerance(1e-2 * s, 1e-2)
    return Tolerance(1e-5 * s, 1e-4)


def sample_elements(n: int, max_elements: int) -> tuple[np.ndarray, str]:
    """The elements a finite-difference check perturbs: all `n`, or a fixed random sample, said so."""
    if n <= max_elements:
        return np.arange(n), ""
    idx = np.sort(np.random.default_rng(0).choice(n, size=max_elements, replace=False))
    return idx, f"{max_elements} of {n} elements (fixed random sample)"


def scale_of(ref: np.ndarray) -> float:
    """The largest magnitude in `ref` (1 when empty): what tolerances scale with."""
    return float(np.abs(ref).max()) if ref.size else 1.0
