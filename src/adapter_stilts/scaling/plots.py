"""The study's plots (matplotlib, written as PNG): gain vs log k per model size with every
subset's point, the interval band and the best fitted law; one small panel per target; predicted
vs observed for the extrapolation test; the variance split; a language x k heatmap."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import fits
from .gains import SIZE, XTREME, Curves


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _x(k) -> np.ndarray:
    return np.log2(1 + np.asarray(k, dtype=float))  # log scale that keeps k = 0


def _panel(ax, curves: Curves, loko: pd.DataFrame, target: str) -> None:
    c, p = curves.curve, curves.points
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, ((model, layers), group) in enumerate(c[c["target"] == target].groupby(SIZE)):
        color = colors[i % len(colors)]
        group = group.sort_values("k")
        label = f"{model} {layers}L"
        pts = p[(p["target"] == target) & (p["model"] == model) & (p["model_layers"] == layers)]
        ax.scatter(_x(pts["k"]) + (i - 1) * 0.03, 100 * pts["gain"], s=9, alpha=0.35, color=color)
        ax.plot(_x(group["k"]), 100 * group["gain"], "o", color=color, label=label)
        ax.fill_between(_x(group["k"]), 100 * group["low"], 100 * group["high"], color=color, alpha=0.15)
        best = loko[(loko["target"] == target) & (loko["model"] == model) & (loko["model_layers"] == layers)] \
            if not loko.empty else loko
        best = best.dropna(subset=["loko_rmse"])
        if len(best):
            form = best.sort_values("loko_rmse").iloc[0]["form"]
            fitted = fits.fit(form, group["k"].to_numpy(float), group["gain"].to_numpy(float))
            grid = np.linspace(0, group["k"].max(), 60)
            if fitted.ok:
                ax.plot(_x(grid), 100 * fitted.predict(grid), "-", color=color, lw=1, label=f"{label}: {form}")
    ax.axhline(0, color="grey", lw=0.6)
    ks = sorted(c[c["target"] == target]["k"].unique())
    ax.set_xticks(_x(ks), [str(int(k)) for k in ks])
    ax.set_title(target, fontsize=9)


def gain_vs_k(curves: Curves, loko: pd.DataFrame, out: Path) -> Path:
    plt = _plt()
    targets = sorted(curves.curve["target"].unique())
    head = XTREME if XTREME in targets else targets[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _panel(ax, curves, loko, head)
    ax.set_xlabel("number of intermediate tasks k (log scale)")
    ax.set_ylabel("gain over no intermediate task (points)")
    ax.set_title(f"{head}: gain vs k per model size (points: subset x seed; band: 95% interval; line: best law)",
                 fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / "gain_vs_k.png", 130)


def small_multiples(curves: Curves, loko: pd.DataFrame, out: Path) -> Path:
    plt = _plt()
    targets = sorted(curves.curve["target"].unique())
    cols = min(4, len(targets))
    rows = -(-len(targets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, target in zip(axes.flat, targets):
        _panel(ax, curves, loko, target)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("k (log scale)")
    fig.supylabel("gain (points)")
    return _save(fig, out / "targets.png", 110)


def predicted_vs_observed(curves: Curves, extra: pd.DataFrame, out: Path) -> Path | None:
    """Each form fitted on k <= 3, its predictions for the held-out k against what was measured."""
    if extra.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    error_cols = [c for c in extra.columns if c.startswith("error_k")]
    lo, hi = np.inf, -np.inf
    for form, group in extra.groupby("form"):
        xs, ys = [], []
        for _, r in group.iterrows():
            obs = curves.curve[(curves.curve["target"] == r["target"]) & (curves.curve["model"] == r["model"])
                               & (curves.curve["model_layers"] == r["model_layers"])].set_index("k")["gain"]
            for col in error_cols:
                if pd.notna(r[col]) and int(col[7:]) in obs.index:
                    observed = obs[int(col[7:])]
                    xs.append(100 * observed)
                    ys.append(100 * (observed + r[col]))
        if xs:
            ax.scatter(xs, ys, s=14, label=form)
            lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.7)
    ax.set_xlabel("observed gain (points)")
    ax.set_ylabel("predicted from k <= 3 (points)")
    ax.legend(fontsize=7)
    return _save(fig, out / "predicted_vs_observed.png", 120)


def variance_split(curves: Curves, out: Path) -> Path | None:
    v = curves.variance
    if v.empty:
        return None
    plt = _plt()
    v = v.assign(label=v["target"] + " " + v["model_layers"].astype(str) + "L k=" + v["k"].astype(str))
    total = (v["subsets"] + v["seeds"] + v["items"]).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(v) + 1.5))
    left = np.zeros(len(v))
    for part, color in (("subsets", "tab:blue"), ("seeds", "tab:orange"), ("items", "tab:gray")):
        share = (v[part] / total).fillna(0).to_numpy()
        ax.barh(v["label"], share, left=left, color=color, label=part)
        left += share
    ax.set_xlabel("share of one cell's gain variance")
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(axis="y", labelsize=6)
    return _save(fig, out / "variance.png", 120)


def languages(curves: Curves, out: Path) -> Path | None:
    """Per target (largest size): the mean gain per language and k."""
    pl = curves.per_language
    if pl.empty:
        return None
    plt = _plt()
    targets = sorted(pl["target"].unique())
    fig, axes = plt.subplots(1, len(targets), figsize=(2.6 * len(targets) + 1, 9), squeeze=False)
    for ax, target in zip(axes[0], targets):
        mine = pl[pl["target"] == target]
        mine = mine[mine["model_layers"] == mine["model_layers"].max()]
        grid = mine.groupby(["language", "k"])["gain"].mean().unstack("k").sort_index()
        limit = max(np.nanmax(np.abs(grid.to_numpy())) * 100, 1e-9)
        image = ax.imshow(100 * grid.to_numpy(), aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit)
        ax.set_xticks(range(grid.shape[1]), [str(int(k)) for k in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=6)
        ax.set_title(f"{target} ({int(mine['model_layers'].max())}L)", fontsize=8)
        ax.set_xlabel("k", fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.08)
    return _save(fig, out / "languages.png", 110)


def write_all(curves: Curves, loko: pd.DataFrame, extra: pd.DataFrame, members: pd.DataFrame, out: Path) -> list[Path]:
    made = [gain_vs_k(curves, loko, out), small_multiples(curves, loko, out), predicted_vs_observed(curves, extra, out),
            variance_split(curves, out), languages(curves, out)]
    return [p for p in made if p is not None]
