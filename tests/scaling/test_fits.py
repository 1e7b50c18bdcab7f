"""Scaling-law fits of the intermediate-task gain: every form recovers its own planted law, leave-one-k-out
picks the planted form over the wrong ones, the threshold form finds the planted critical k, extrapolation
holds out exactly the large k and is near exact for the right law only, the bootstrap interval covers the
point error, failed fits come back as ok=False with NaN, and the joint (k, layers) forms predict a held-out
model size."""
import numpy as np
import pytest

from adapter_stilts.scaling.fits import (
    FORMS,
    JOINT_FORMS,
    compare_forms,
    extrapolate,
    extrapolate_size,
    extrapolation_interval,
    fit,
    fit_joint,
    leave_one_k_out,
)

K_GRID = [0, 1, 2, 3, 5, 7, 9]
K = np.repeat(K_GRID, 3).astype(float)  # several points per k: subsets x seeds

PLANTED = {
    "linear": [0.3, 0.4],
    "log": [-0.2, 1.5],
    "power": [0.2, 2.0, 0.8],
    "isik": [-0.5, 1.0, 1.0, 0.5],  # a, log A (A = e), alpha, beta
    "threshold": [0.1, 2.0, 3.0],
}


def _noisy(form: str, params: list[float], k: np.ndarray, sd: float, seed: int) -> np.ndarray:
    return FORMS[form].predict(np.array(params), k) + np.random.default_rng(seed).normal(0, sd, k.size)


def test_forms_are_listed_in_order_with_named_parameters():
    assert list(FORMS) == ["linear", "log", "power", "isik", "threshold"]
    for f in FORMS.values():
        assert len(f.param_names) == f.n_params
    assert list(JOINT_FORMS) == ["additive", "interaction"]


def test_curves_follow_their_written_formulas():
    k = np.array([0.0, 1.0, 3.0, 4.0, 10.0])
    x = np.log(1 + k)
    expected = {
        "linear": 0.3 + 0.4 * k,
        "log": -0.2 + 1.5 * x,
        "power": 0.2 + 2.0 * (1 - (1 + k) ** -0.8),
        "isik": -0.5 + np.log(np.e * (1 + k) ** 1.0) ** 0.5,
        "threshold": np.where(k <= 3, 0.1, 0.1 + 2.0 * (x - np.log(4))),
    }
    for form, values in expected.items():
        np.testing.assert_allclose(FORMS[form].predict(np.array(PLANTED[form]), k), values, rtol=1e-12, atol=1e-12)
    ll = np.log(np.array([4.0, 8.0, 12.0, 12.0, 24.0]))
    np.testing.assert_allclose(JOINT_FORMS["additive"].predict([0.1, 0.2, 0.3], k, np.exp(ll)),
                               0.1 + 0.2 * x + 0.3 * ll)
    np.testing.assert_allclose(JOINT_FORMS["interaction"].predict([0.1, 0.2, 0.3, 0.4], k, np.exp(ll)),
                               0.1 + 0.2 * x + 0.3 * ll + 0.4 * x * ll)


@pytest.mark.parametrize("form", list(PLANTED))
def test_each_form_recovers_its_planted_parameters_and_predicts_a_new_k(form):
    planted = np.array(PLANTED[form])
    fitted = fit(form, K, FORMS[form].predict(planted, K))
    assert fitted.ok and fitted.form == form
    np.testing.assert_allclose(fitted.params, planted, rtol=1e-4, atol=1e-4)
    new_k = np.array([4.0, 12.0])
    np.testing.assert_allclose(fitted.predict(new_k), FORMS[form].predict(planted, new_k), atol=1e-4)
    assert fitted.rss < 1e-8


def test_fit_matches_least_squares_over_all_points():
    # the solvers work on per-k means weighted by counts: that must be the all-points optimum, unequal counts too
    k = np.array([0, 0, 0, 1, 2, 2, 3, 5, 5, 5, 5, 9], dtype=float)
    y = _noisy("log", [0.0, 1.0], k, 0.2, 0)
    design = np.column_stack([np.ones_like(k), np.log1p(k)])
    expected = np.linalg.lstsq(design, y, rcond=None)[0]
    fitted = fit("log", k, y)
    np.testing.assert_allclose(fitted.params, expected, atol=1e-12)
    np.testing.assert_allclose(fitted.rss, np.sum((design @ expected - y) ** 2), rtol=1e-10)


def test_loko_prefers_log_on_a_planted_log_law():
    k = np.repeat(K_GRID, 5).astype(float)
    y = _noisy("log", [0.1, 1.0], k, 0.05, 0)
    table = compare_forms(k, y)
    assert list(table.columns) == ["form", "formula", "n_params", "loko_rmse", "n_failed", "params"]
    assert set(table.form) == set(FORMS)
    rmse = dict(zip(table.form, table.loko_rmse))
    assert table.form[0] == "log"
    assert rmse["log"] < 0.05  # about the noise of a mean of 5 points, far below the wrong forms
    assert rmse["linear"] > 5 * rmse["log"] and rmse["threshold"] > 5 * rmse["log"]
    assert table.loko_rmse.is_monotonic_increasing
    assert "a=" in table.params[0] and "b=" in table.params[0]


def test_loko_prefers_linear_on_a_planted_linear_law():
    y = _noisy("linear", [0.0, 0.3], K, 0.05, 1)
    linear, log = leave_one_k_out("linear", K, y), leave_one_k_out("log", K, y)
    assert linear["rmse"] < 0.5 * log["rmse"]
    assert set(linear["per_k"]) == set(K_GRID) and linear["n_failed"] == 0


def test_loko_error_is_prediction_minus_observed_mean():
    y = FORMS["linear"].predict(np.array([0.0, 1.0]), K)
    y[K == 9] += 3.0  # one k off the line: held out, the others fit the line exactly, so its error is -3
    out = leave_one_k_out("linear", K, y)
    assert out["per_k"][9] == pytest.approx(-3.0)
    assert all(abs(e) > 1e-3 for kv, e in out["per_k"].items() if kv != 9)  # k = 9 pulls every other fit
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean(np.array(list(out["per_k"].values())) ** 2)))


def test_threshold_form_recovers_the_planted_critical_k():
    y = _noisy("threshold", [0.0, 1.5, 3.0], K, 0.05, 2)
    fitted = fit("threshold", K, y)
    assert fitted.ok and fitted.params[2] == 3.0
    assert fitted.params[1] == pytest.approx(1.5, abs=0.2)
    # the grid of k0 reaches the second-largest k: flat up to 7, rising to 9
    late = FORMS["threshold"].predict(np.array([0.2, 1.0, 7.0]), K)
    assert fit("threshold", K, late).params[2] == 7.0


def test_isik_on_falling_gains_collapses_to_the_mean():
    # as published the law is non-decreasing in k (A >= 1, alpha >= 0): a falling trend leaves a constant
    y = _noisy("log", [1.0, -0.5], K, 0.01, 9)
    fitted = fit("isik", K, y)
    assert fitted.ok
    np.testing.assert_allclose(fitted.predict(K_GRID), y.mean(), atol=1e-6)


def test_extrapolate_holds_out_exactly_the_large_k():
    y = _noisy("log", [0.0, 1.0], K, 0.02, 3)
    log, linear = extrapolate("log", K, y, fit_max_k=3), extrapolate("linear", K, y, fit_max_k=3)
    assert set(log["per_k"]) == {5.0, 7.0, 9.0} == set(linear["per_k"])
    assert log["fit"].ok and log["fit"].n == int((K <= 3).sum())
    assert log["mean_abs_error"] < 0.05
    assert linear["mean_abs_error"] > 0.5 and linear["mean_abs_error"] > 10 * log["mean_abs_error"]
    assert all(e > 0 for e in linear["per_k"].values())  # a line through log-shaped data overshoots
    assert set(extrapolate("log", K, y, fit_max_k=5)["per_k"]) == {7.0, 9.0}


def test_extrapolate_refuses_when_nothing_is_held_out_or_fitted():
    y = np.zeros_like(K)
    with pytest.raises(ValueError, match="extrapolate"):
        extrapolate("log", K, y, fit_max_k=9)
    with pytest.raises(ValueError, match="fit on"):
        extrapolate("log", K + 1, y, fit_max_k=0.5)


def _bootstrap_means(k: np.ndarray, y: np.ndarray, k_values: np.ndarray, reps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((reps, k_values.size))
    for j, kv in enumerate(k_values):
        pts = y[k == kv]
        out[:, j] = pts[rng.integers(0, pts.size, (reps, pts.size))].mean(axis=1)
    return out


def test_extrapolation_interval_covers_the_point_error():
    k = np.repeat(K_GRID, 6).astype(float)
    y = _noisy("log", [0.0, 1.0], k, 0.3, 4)
    k_values = np.array(K_GRID, dtype=float)
    reps = _bootstrap_means(k, y, k_values, 300, 5)
    point = extrapolate("linear", k, y)["mean_abs_error"]
    iv = extrapolation_interval("linear", k_values, reps)
    assert iv["n_ok"] == 300
    assert iv["low"] <= point <= iv["high"]
    assert iv["low"] < iv["high"]
    # the bounds are percentiles of the per-replicate errors (for linear: a plain least-squares line on k <= 3)
    lo = k_values <= 3
    errors = []
    for row in reps:
        b, a = np.polyfit(k_values[lo], row[lo], 1)
        errors.append(np.mean(np.abs(a + b * k_values[~lo] - row[~lo])))
    np.testing.assert_allclose([iv["low"], iv["high"]], np.percentile(errors, [2.5, 97.5]), rtol=1e-9)
    narrow = extrapolation_interval("linear", k_values, reps, level=0.5)
    assert iv["low"] <= narrow["low"] <= narrow["high"] <= iv["high"]


def test_extrapolation_interval_counts_only_successful_fits():
    k_values = np.array([0, 1, 2, 3, 5, 9], dtype=float)
    reps = _bootstrap_means(np.repeat(k_values, 4), _noisy("power", [0, 1, 0.5], np.repeat(k_values, 4), 0.1, 6),
                            k_values, 40, 7)
    reps[:10, 1:3] = np.nan  # these replicates keep only k = 0 and 3 below the cut: too few for power's 3 params
    iv = extrapolation_interval("power", k_values, reps)
    assert iv["n_ok"] == 30 and iv["low"] <= iv["high"]
    none = extrapolation_interval("power", k_values, reps[:10])
    assert none["n_ok"] == 0 and np.isnan(none["low"]) and np.isnan(none["high"])
    with pytest.raises(ValueError):
        extrapolation_interval("power", k_values, reps[:, :4])
    with pytest.raises(ValueError):
        extrapolation_interval("power", k_values, reps, fit_max_k=9)


def test_too_few_distinct_k_gives_a_failed_fit_not_an_exception():
    k = np.array([0, 0, 1, 1], dtype=float)
    y = np.array([0.0, 0.1, 0.5, 0.6])
    for form in ("power", "isik", "threshold"):
        fitted = fit(form, k, y)
        assert not fitted.ok
        assert np.isnan(fitted.params).all() and fitted.params.size == FORMS[form].n_params
        assert np.isnan(fitted.predict([0, 1, 4])).all()
    assert fit("linear", k, y).ok
    assert not fit("linear", [2, 2, 2], [0.1, 0.2, 0.3]).ok
    # isik needs 4 distinct k: every leave-one-out fit on 4 distinct k fails, and the form sorts last
    k4 = np.repeat([0, 1, 2, 3], 2).astype(float)
    y4 = np.log1p(k4)
    loko = leave_one_k_out("isik", k4, y4)
    assert loko["n_failed"] == 4 and np.isnan(loko["rmse"])
    table = compare_forms(k4, y4)
    assert table.form.iloc[-1] == "isik" and table.n_failed.iloc[-1] == 4
    assert table.params.iloc[-1] != "fit failed"  # the fit on all 4 distinct k itself works


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        fit("log", [0, 1, 2], [0.0, 1.0])
    with pytest.raises(ValueError):
        fit("nope", [0, 1, 2], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        fit("log", [-1, 1, 2], [0.0, 1.0, 2.0])


def _grid(layer_sizes=(4, 8, 12), per_cell=2):
    k, layers = np.meshgrid(np.array(K_GRID, float), np.array(layer_sizes, float), indexing="ij")
    return np.repeat(k.ravel(), per_cell), np.repeat(layers.ravel(), per_cell)


def test_extrapolate_size_is_near_exact_for_a_planted_additive_law():
    k, layers = _grid()
    y = 0.1 + 0.8 * np.log1p(k) + 0.5 * np.log(layers) + np.random.default_rng(8).normal(0, 0.01, k.size)
    out = extrapolate_size("additive", k, layers, y)
    assert out["held_out_layers"] == 12
    assert set(out["per_k"]) == set(K_GRID)
    assert out["mean_abs_error"] < 0.05
    assert out["fit"].ok and out["fit"].n == int((layers < 12).sum())


def test_interaction_law_is_recovered_and_beats_the_additive_form():
    k, layers = _grid()
    planted = np.array([0.1, -0.5, 0.2, 0.6])
    y = 0.1 - 0.5 * np.log1p(k) + 0.2 * np.log(layers) + 0.6 * np.log1p(k) * np.log(layers)
    fitted = fit_joint("interaction", k, layers, y)
    assert fitted.ok
    np.testing.assert_allclose(fitted.params, planted, atol=1e-9)
    np.testing.assert_allclose(fitted.predict(4.0, 16.0), JOINT_FORMS["interaction"].predict(planted, 4.0, 16.0))
    inter, add = extrapolate_size("interaction", k, layers, y), extrapolate_size("additive", k, layers, y)
    assert inter["mean_abs_error"] < 1e-9
    assert add["mean_abs_error"] > 0.1


def test_joint_fits_need_two_sizes():
    k, layers = _grid(layer_sizes=(12,))
    y = np.log1p(k)
    with pytest.raises(ValueError):
        extrapolate_size("additive", k, layers, y)
    failed = fit_joint("additive", k, layers, y)  # a single size cannot identify the log(L) slope
    assert not failed.ok and np.isnan(failed.params).all() and np.isnan(failed.predict([1, 2], 12)).all()
    k2, layers2 = _grid(layer_sizes=(8, 12))
    out = extrapolate_size("additive", k2, layers2, np.log1p(k2))  # trains on one size only
    assert not out["fit"].ok and np.isnan(out["mean_abs_error"])
