"""Functional forms for how the intermediate-task gain grows with k, the number of English
intermediate tasks, and with model size (encoder layers L), compared by how well they predict data
they were not fitted on.

The gain at k = 0 is 0 by definition (the baseline); with only a handful of k values (e.g. 0, 1, 2,
3, 5, 9) an in-sample fit always favours the form with most parameters, so forms are compared by
leave-one-k-out (LOKO) error: every distinct k is held out in turn, the form is fitted on the
points at the other k and its prediction at the held-out k is compared with the mean observed gain
there. Two extrapolation checks ask the question a scaling law is for: fitted on small k, does it
predict large k (`extrapolate`, with a bootstrap interval from `extrapolation_interval`); fitted on
the smaller models, does it predict the largest one (`extrapolate_size`)?

Forms of gain(k):

* linear     a + b*k
* log        a + b*log(1+k)
* power      a + b*(1 - (1+k)**(-c)), c > 0: a saturating power law (nests log as c -> 0)
* isik       a + (log(A*(1+k)**alpha))**beta, A >= 1, alpha >= 0, beta > 0: the law of Isik et al. 2024
             (arXiv 2402.04177), f(n) = (log(A*n**alpha))**beta with n = 1+k, plus an offset a
* threshold  a for k <= k0, a + b*(log(1+k) - log(1+k0)) above: a Muppet-style critical number of tasks

The Isik adaptation. The published form describes a performance metric, which is positive; a gain is
a difference between two runs and can be negative, so a free offset a is added rather than shifting
the response (y - min(y) + eps would make the fitted law depend on the noisiest point, and change
between LOKO folds). The constraints A >= 1 and alpha >= 0 keep the log argument >= 1 at every k >= 0,
so the log term is real and non-negative and its non-integer power beta is defined; f(0) = a + (log A)**beta.
As published, the form is monotone non-decreasing in k: on gains that fall with k it collapses to a
constant. Its parameters are stored as (a, log A, alpha, beta) so that a large A cannot overflow.
It is fitted through the equivalent a + c*(s + x)**beta with x = log(1+k), c = alpha**beta >= 0 and
s = log(A)/alpha >= 0, where a and c enter linearly: a grid over (s, beta) with a and c solved exactly,
then a bounded least-squares refinement of all four, within beta in [0.05, 20] and s <= 1e3 (beyond them
the law is a numerically indistinguishable exponential or log-of-log in x). An isik fit costs about
10 ms, so `extrapolation_interval` with 500 replicates takes a few seconds for it (the others well under 1 s).

Every fit is least squares over all points (one point per subset x seed, so k repeats). A fit that
cannot be made (fewer distinct k than parameters, an optimiser that does not converge, non-finite
parameters) is returned with ok=False and NaN parameters instead of raising, so a LOKO or bootstrap
loop simply counts it.

Joint forms over k and L (`JOINT_FORMS`) are linear in their parameters:

* additive     a + b*log(1+k) + c*log(L)
* interaction  a + b*log(1+k) + c*log(L) + d*log(1+k)*log(L)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize_scalar

ArrayLike = Any  # anything np.asarray turns into a 1-D float array

# ------------------------------------------------------------------------------------------------ forms of gain(k)


@dataclass(frozen=True, eq=False)
class Form:
    """A functional form of gain(k). `curve(params, k)` evaluates it; `solver(k, y, w)` returns its
    least-squares parameters for the distinct k values, the mean y at each and their point counts w
    (the same optimum as least squares over all points), or None / raises when it cannot."""

    name: str
    formula: str
    n_params: int
    param_names: tuple[str, ...]
    curve: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)
    solver: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None] = field(repr=False)

    def predict(self, params: np.ndarray, k: ArrayLike) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.curve(np.asarray(params, dtype=float), np.asarray(k, dtype=float))


# Solvers see one point per distinct k (the mean y there) weighted by its count: the sum of squares over
# all points is that weighted sum plus a constant (the within-k scatter), so the optimum is the same and
# a bootstrap loop costs O(distinct k) per fit whatever the number of subsets x seeds.


def _simple_ls(g: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted intercept and slope of y on each row of g (shape [m, n]) at once, with their weighted SSE."""
    total = w.sum()
    gm = (g * w).sum(axis=1) / total
    ym = float(w @ y) / total
    yc = y - ym
    gc = g - gm[:, None]
    sxx = (gc * gc) @ w
    sxy = gc @ (w * yc)
    with np.errstate(all="ignore"):
        slope = np.where(sxx > 0, sxy / sxx, 0.0)
    sse = (w * yc) @ yc - slope * sxy
    return ym - slope * gm, slope, sse


def _lstsq(design: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, float] | None:
    """(Weighted) linear least squares; None when the design does not identify every coefficient."""
    sw = np.ones_like(y) if w is None else np.sqrt(w)
    coef, _, rank, _ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    if rank < design.shape[1]:
        return None
    r = (design @ coef - y) * sw
    return coef, float(r @ r)


def _linear_curve(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    return p[0] + p[1] * k


def _log_curve(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    return p[0] + p[1] * np.log1p(k)


def _solve_linear(k: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    out = _lstsq(np.column_stack([np.ones_like(k), k]), y, w)
    return None if out is None else out[0]


def _solve_log(k: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    out = _lstsq(np.column_stack([np.ones_like(k), np.log1p(k)]), y, w)
    return None if out is None else out[0]


def _power_curve(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    # 1 - (1+k)**(-c) written as -expm1(-c*log(1+k)): exact for small c, where the form approaches log
    return p[0] + p[1] * -np.expm1(-p[2] * np.log1p(k))


_POWER_LOGC = np.linspace(np.log(1e-3), np.log(50.0), 61)


def _solve_power(k: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    # variable projection: for a fixed c the form is linear in (a, b), so only c is searched —
    # a grid over log c (the profile SSE can have several local minima), then a bounded 1-D refinement
    x = np.log1p(k)

    def profile(logc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _simple_ls(-np.expm1(-np.exp(logc)[:, None] * x[None, :]), y, w)

    _, _, sse = profile(_POWER_LOGC)
    i = int(np.argmin(sse))
    lo, hi = _POWER_LOGC[max(i - 1, 0)], _POWER_LOGC[min(i + 1, len(_POWER_LOGC) - 1)]
    res = minimize_scalar(lambda t: float(profile(np.array([t]))[2][0]), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})
    logc = float(res.x) if res.success and res.fun <= sse[i] else float(_POWER_LOGC[i])
    a, b, _ = profile(np.array([logc]))
    return np.array([a[0], b[0], np.exp(logc)])


def _isik_curve(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    a, log_a, alpha, beta = p
    # the base is >= 0 under the fitted constraints; clipping keeps hand-made parameters from giving NaN
    return a + np.maximum(log_a + alpha * np.log1p(k), 0.0) ** beta


# beta >= 0.05 keeps alpha = c**(1/beta) finite; s = log(A)/alpha <= 1e3 bounds the nearly linear-in-x end
_ISIK_BOUNDS = (np.array([-np.inf, 0.0, 0.0, 0.05]), np.array([np.inf, np.inf, 1e3, 20.0]))
# a dense start grid: the refinement then needs few iterations (its per-iteration overhead dominates)
_ISIK_S, _ISIK_BETA = (g.ravel() for g in np.meshgrid(np.concatenate([[0.0], np.logspace(-2, 3, 60)]),
                                                         np.logspace(np.log10(0.05), np.log10(20.0), 60),
                                                         indexing="ij"))


def _solve_isik(k: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    # fitted as a + c*((s + x)/(s + xm))**beta (xm: mean x), linear in (a, c): grid over (s, beta), then all four
    # refined. Dividing by (s + xm) makes c the curve's height at xm: without it c spans hundreds of orders of
    # magnitude along the ridge s, beta -> large (an exponential in x) and the optimiser does not converge.
    x = np.log1p(k)
    xm = float(x.mean())
    s, beta = _ISIK_S, _ISIK_BETA
    a, c, sse = _simple_ls(((s[:, None] + x[None, :]) / (s[:, None] + xm)) ** beta[:, None], y, w)
    neg = c < 0  # alpha >= 0 means c >= 0: the constrained optimum is then the constant (weighted) mean
    ym = float(w @ y) / w.sum()
    a, c = np.where(neg, ym, a), np.where(neg, 0.0, c)
    sse = np.where(neg, w @ (y - ym) ** 2, sse)
    i = int(np.argmin(sse))
    theta0 = np.clip(np.array([a[i], c[i], s[i], beta[i]]), *_ISIK_BOUNDS)  # grid ends may round past a bound
    sw = np.sqrt(w)

    def resid(t: np.ndarray) -> np.ndarray:
        return (t[0] + t[1] * (np.maximum(t[2] + x, 0.0) / (t[2] + xm)) ** t[3] - y) * sw

    res = least_squares(resid, theta0, bounds=_ISIK_BOUNDS, method="trf", max_nfev=2000, x_scale="jac")
    if res.status <= 0:
        return None
    a_, c_, s_, beta_ = res.x if 2 * res.cost <= sse[i] else theta0
    alpha = c_ ** (1.0 / beta_) / (s_ + xm)  # c*((s+x)/(s+xm))**beta = (alpha*s + alpha*x)**beta
    return np.array([a_, s_ * alpha, alpha, beta_])


def _threshold_curve(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    a, b, k0 = p
    return a + b * np.maximum(np.log1p(k) - np.log1p(k0), 0.0)


def _solve_threshold(k: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    # k0 on the grid of observed k, leaving at least one k above it so that b is identified;
    # for each k0 the form is linear in (a, b). Ties go to the smallest k0 (the simpler law).
    best: tuple[float, np.ndarray] | None = None
    x = np.log1p(k)
    for k0 in np.unique(k)[:-1]:
        out = _lstsq(np.column_stack([np.ones_like(x), np.maximum(x - np.log1p(k0), 0.0)]), y, w)
        if out is None:
            continue
        coef, sse = out
        if best is None or sse < best[0] - 1e-12 * max(1.0, best[0]):
            best = (sse, np.array([coef[0], coef[1], k0]))
    return None if best is None else best[1]


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("linear", "a + b*k", 2, ("a", "b"), _linear_curve, _solve_linear),
        Form("log", "a + b*log(1+k)", 2, ("a", "b"), _log_curve, _solve_log),
        Form("power", "a + b*(1 - (1+k)**(-c)), c > 0", 3, ("a", "b", "c"), _power_curve, _solve_power),
        Form("isik", "a + (log(A*(1+k)**alpha))**beta, A >= 1, alpha >= 0, beta > 0", 4,
             ("a", "log_A", "alpha", "beta"), _isik_curve, _solve_isik),
        Form("threshold", "a for k <= k0, a + b*(log(1+k) - log(1+k0)) above; k0 on the observed k", 3,
             ("a", "b", "k0"), _threshold_curve, _solve_threshold),
    )
}


@dataclass(frozen=True, eq=False)
class Fit:
    """A fitted form. `params` follow `FORMS[form].param_names`; NaN-filled when ok is False."""

    form: str
    params: np.ndarray
    ok: bool
    rss: float = float("nan")  # residual sum of squares on the fitted points
    n: int = 0  # points fitted
    model: Form | None = field(default=None, repr=False)

    def predict(self, k: ArrayLike) -> np.ndarray:
        k = np.asarray(k, dtype=float)
        if not self.ok:
            return np.full(k.shape, np.nan)
        return (self.model or FORMS[self.form]).predict(self.params, k)


def _lookup(form, registry: dict, kind: type, what: str):
    """A form given by name (or as itself) from its registry; ValueError names the known ones."""
    if isinstance(form, kind):
        return form
    if form not in registry:
        raise ValueError(f"unknown {what} {form!r}; known: {', '.join(registry)}")
    return registry[form]


def _form(form: str | Form) -> Form:
    return _lookup(form, FORMS, Form, "form")


def _clean(k: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """1-D float arrays of equal length, non-finite points dropped; k must be >= 0."""
    k, y = np.asarray(k, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if k.shape != y.shape:
        raise ValueError(f"k and y differ in length: {k.size} vs {y.size}")
    keep = np.isfinite(k) & np.isfinite(y)
    k, y = k[keep], y[keep]
    if (k < 0).any():
        raise ValueError("k (number of intermediate tasks) must be >= 0")
    return k, y


def _failed(f: Form, n: int) -> Fit:
    return Fit(f.name, np.full(f.n_params, np.nan), False, n=n, model=f)


def fit(form: str | Form, k: ArrayLike, y: ArrayLike) -> Fit:
    """Least-squares fit of `form` to the points (k, y); ok=False (never an exception) when the fit
    cannot be made, e.g. fewer distinct k than the form has parameters."""
    f = _form(form)
    k, y = _clean(k, y)
    ku, inv = np.unique(k, return_inverse=True)
    if ku.size < f.n_params:
        return _failed(f, k.size)
    counts = np.bincount(inv).astype(float)
    try:
        with np.errstate(all="ignore"):
            params = f.solver(ku, np.bincount(inv, weights=y) / counts, counts)
    except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError):
        return _failed(f, k.size)
    if params is None:
        return _failed(f, k.size)
    params = np.asarray(params, dtype=float)
    with np.errstate(all="ignore"):
        r = f.predict(params, k) - y
    if not (np.isfinite(params).all() and np.isfinite(r).all()):
        return _failed(f, k.size)
    return Fit(f.name, params, True, rss=float(r @ r), n=k.size, model=f)


def leave_one_k_out(form: str | Form, k: ArrayLike, y: ArrayLike) -> dict[str, Any]:
    """For each distinct k: fit on the points at the other k values, predict there. Returns
    {"per_k": {k: prediction - mean observed y at k (NaN if that fit failed)}, "rmse": over the k whose
    fit succeeded (NaN if none), "n_failed": number of failed fits}."""
    f = _form(form)
    k, y = _clean(k, y)
    per_k: dict[float, float] = {}
    for kv in np.unique(k):
        held = k == kv
        fitted = fit(f, k[~held], y[~held])
        per_k[float(kv)] = float(fitted.predict(np.array([kv]))[0] - y[held].mean()) if fitted.ok else float("nan")
    errors = np.array(list(per_k.values()))
    ok = np.isfinite(errors)
    rmse = float(np.sqrt(np.mean(errors[ok] ** 2))) if ok.any() else float("nan")
    return {"per_k": per_k, "rmse": rmse, "n_failed": int((~ok).sum())}


def _param_string(fitted: Fit) -> str:
    if not fitted.ok:
        return "fit failed"
    names = fitted.model.param_names if fitted.model else FORMS[fitted.form].param_names
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, fitted.params))


def compare_forms(k: ArrayLike, y: ArrayLike, forms: Iterable[str | Form] | None = None) -> pd.DataFrame:
    """One row per form (default: all of FORMS): form, formula, n_params, loko_rmse, n_failed and the
    parameters of the fit on all points as a string; sorted by loko_rmse, NaN last, ties in given order."""
    rows = []
    for f in map(_form, FORMS.values() if forms is None else forms):
        loko = leave_one_k_out(f, k, y)
        rows.append({"form": f.name, "formula": f.formula, "n_params": f.n_params, "loko_rmse": loko["rmse"],
                     "n_failed": loko["n_failed"], "params": _param_string(fit(f, k, y))})
    frame = pd.DataFrame(rows, columns=["form", "formula", "n_params", "loko_rmse", "n_failed", "params"])
    return frame.sort_values("loko_rmse", na_position="last", kind="stable").reset_index(drop=True)


def extrapolate(form: str | Form, k: ArrayLike, y: ArrayLike, fit_max_k: float = 3) -> dict[str, Any]:
    """Fit on the points with k <= fit_max_k and predict every held-out k > fit_max_k. Returns
    {"per_k": {k: prediction - mean observed y}, "mean_abs_error", "fit"}; errors are NaN when the fit
    failed. ValueError when no k is held out or no point is left to fit."""
    f = _form(form)
    k, y = _clean(k, y)
    train = k <= fit_max_k
    if not train.any():
        raise ValueError(f"no point with k <= {fit_max_k} to fit on")
    if train.all():
        raise ValueError(f"no k > {fit_max_k} to extrapolate to")
    fitted = fit(f, k[train], y[train])
    per_k = {float(kv): float(fitted.predict(np.array([kv]))[0] - y[k == kv].mean()) for kv in np.unique(k[~train])}
    mae = float(np.mean(np.abs(list(per_k.values())))) if fitted.ok else float("nan")
    return {"per_k": per_k, "mean_abs_error": mae, "fit": fitted}


def extrapolation_interval(form: str | Form, k_values: ArrayLike, replicate_means: ArrayLike, fit_max_k: float = 3,
                           level: float = 0.95) -> dict[str, float | int]:
    """Percentile interval of the mean absolute extrapolation error over bootstrap replicates.

    `replicate_means` is [R, len(k_values)]: replicate r's mean gain at each k (from a hierarchical
    bootstrap elsewhere). Each replicate is fitted on its k <= fit_max_k and scored against its own
    means at the held-out k. Returns {"low", "high", "n_ok"}: the interval over the replicates whose fit
    succeeded (NaN bounds when none did). The point estimate is the caller's (`extrapolate`)."""
    f = _form(form)
    kv = np.asarray(k_values, dtype=float).ravel()
    reps = np.atleast_2d(np.asarray(replicate_means, dtype=float))
    if reps.shape[1] != kv.size:
        raise ValueError(f"replicate_means has {reps.shape[1]} columns for {kv.size} k values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    train = kv <= fit_max_k
    if not train.any():
        raise ValueError(f"no k <= {fit_max_k} to fit on")
    if train.all():
        raise ValueError(f"no k > {fit_max_k} to extrapolate to")
    errors = []
    for row in reps:
        fitted = fit(f, kv[train], row[train])
        if fitted.ok:
            err = np.abs(fitted.predict(kv[~train]) - row[~train])
            if np.isfinite(err).all():
                errors.append(err.mean())
    if not errors:
        return {"low": float("nan"), "high": float("nan"), "n_ok": 0}
    low, high = np.percentile(errors, [50 * (1 - level), 50 * (1 + level)])
    return {"low": float(low), "high": float(high), "n_ok": len(errors)}


# ------------------------------------------------------------------------------------------- joint forms gain(k, L)


@dataclass(frozen=True, eq=False)
class JointForm:
    """A form of gain(k, L) that is linear in its parameters: `design(k, layers)` is its design matrix."""

    name: str
    formula: str
    n_params: int
    param_names: tuple[str, ...]
    design: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)

    def predict(self, params: np.ndarray, k: ArrayLike, layers: ArrayLike) -> np.ndarray:
        k, layers = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(layers, dtype=float))
        return (self.design(k.ravel(), layers.ravel()) @ np.asarray(params, dtype=float)).reshape(k.shape)


def _additive_design(k: np.ndarray, layers: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(k), np.log1p(k), np.log(layers)])


def _interaction_design(k: np.ndarray, layers: np.ndarray) -> np.ndarray:
    x, ll = np.log1p(k), np.log(layers)
    return np.column_stack([np.ones_like(k), x, ll, x * ll])


JOINT_FORMS: dict[str, JointForm] = {
    f.name: f
    for f in (
        JointForm("additive", "a + b*log(1+k) + c*log(L)", 3, ("a", "b", "c"), _additive_design),
        JointForm("interaction", "a + b*log(1+k) + c*log(L) + d*log(1+k)*log(L)", 4, ("a", "b", "c", "d"),
                  _interaction_design),
    )
}


@dataclass(frozen=True, eq=False)
class JointFit:
    """A fitted joint form; `params` follow `JOINT_FORMS[form].param_names`, NaN-filled when not ok."""

    form: str
    params: np.ndarray
    ok: bool
    rss: float = float("nan")
    n: int = 0
    model: JointForm | None = field(default=None, repr=False)

    def predict(self, k: ArrayLike, layers: ArrayLike) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(k), np.shape(layers))
        if not self.ok:
            return np.full(shape, np.nan)
        return (self.model or JOINT_FORMS[self.form]).predict(self.params, k, layers)


def _joint_form(form: str | JointForm) -> JointForm:
    return _lookup(form, JOINT_FORMS, JointForm, "joint form")


def _clean_joint(k: ArrayLike, layers: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, y = np.asarray(k, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    layers = np.asarray(layers, dtype=float).ravel()
    if not k.shape == layers.shape == y.shape:
        raise ValueError(f"k, layers and y differ in length: {k.size}, {layers.size}, {y.size}")
    keep = np.isfinite(k) & np.isfinite(layers) & np.isfinite(y)
    k, layers, y = k[keep], layers[keep], y[keep]
    if (k < 0).any() or (layers <= 0).any():
        raise ValueError("k must be >= 0 and layers > 0")
    return k, layers, y


def fit_joint(form: str | JointForm, k: ArrayLike, layers: ArrayLike, y: ArrayLike) -> JointFit:
    """Least-squares fit of a joint form; ok=False (no exception) when the data do not identify every
    parameter (e.g. a single model size)."""
    f = _joint_form(form)
    k, layers, y = _clean_joint(k, layers, y)
    failed = JointFit(f.name, np.full(f.n_params, np.nan), False, n=k.size, model=f)
    if k.size < f.n_params:
        return failed
    try:
        out = _lstsq(f.design(k, layers), y)
    except np.linalg.LinAlgError:
        return failed
    if out is None or not np.isfinite(out[0]).all():
        return failed
    return JointFit(f.name, out[0], True, rss=out[1], n=k.size, model=f)


def extrapolate_size(form: str | JointForm, k: ArrayLike, layers: ArrayLike, y: ArrayLike) -> dict[str, Any]:
    """Fit on every model size but the largest and predict the largest. Returns {"per_k": {k: prediction -
    mean observed y at the largest size}, "mean_abs_error", "held_out_layers", "fit"}; errors are NaN when
    the fit failed. ValueError with fewer than 2 sizes."""
    f = _joint_form(form)
    k, layers, y = _clean_joint(k, layers, y)
    sizes = np.unique(layers)
    if sizes.size < 2:
        raise ValueError(f"need at least 2 model sizes, got {sizes.size}")
    largest = sizes[-1]
    held = layers == largest
    fitted = fit_joint(f, k[~held], layers[~held], y[~held])
    per_k = {float(kv): float(fitted.predict(kv, largest) - y[held & (k == kv)].mean()) for kv in np.unique(k[held])}
    mae = float(np.mean(np.abs(list(per_k.values())))) if fitted.ok else float("nan")
    return {"per_k": per_k, "mean_abs_error": mae, "held_out_layers": float(largest), "fit": fitted}
