"""NPRegressor (npkit.estimator): fit / predict on grouped rows, predictions in the user's units,
save / load, scikit-learn parameters, missing values, single-series guidance and resume."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch.distributions import Distribution

from npkit.estimator import NPRegressor
from npkit.predictive import SampleMixture

SMALL = {"hidden_dim": 16, "r_dim": 16, "z_dim": 8, "encoder_layers": 2, "decoder_layers": 2, "num_heads": 4}
OPTIONS = dict(steps=6, batch_size=4, lr=1e-3, num_samples=4, progress=False, num_context=(2, 10), num_target=(1, 10))


def regressor(model: str = "anp", model_options: dict | None = None, **options) -> NPRegressor:
    small = {k: v for k, v in SMALL.items() if model in ("anp", "np", "lnp") or k not in ("z_dim", "num_heads")}
    if model != "anp":
        small.pop("num_heads", None)
    return NPRegressor(model, model_options={**small, **(model_options or {})}, **{**OPTIONS, **options})


def curves(num_groups: int = 8, points: int = 15, seed: int = 0):
    """Rows of shifted sine curves: X [n, 1], y [n], one group per curve."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (num_groups, points))
    y = np.sin(x + rng.uniform(-1, 1, (num_groups, 1))) + 0.05 * rng.normal(size=x.shape)
    return x.reshape(-1, 1), y.reshape(-1), np.repeat(np.arange(num_groups), points)


@pytest.fixture(scope="module")
def fitted():
    X, y, groups = curves()
    return regressor().fit(X, y, groups=groups), (X, y, groups)


def context_and_query(X, y):
    return (X[:6], y[:6]), X[6:15], y[6:15]


def test_predict_returns_the_marginal_distribution_over_z(fitted):
    est, (X, y, _) = fitted
    context, xq, _ = context_and_query(X, y)
    pred = est.predict(xq, context=context)
    assert isinstance(pred, SampleMixture) and pred.num_components == 4
    assert pred.batch_shape == (9,) and pred.event_shape == ()
    assert torch.isfinite(pred.mean).all() and (pred.stddev > 0).all()
    assert torch.equal(est.predict(xq, context=context).mean, pred.mean)  # seeded: repeatable


def test_score_is_the_mean_per_point_log_likelihood_of_predict(fitted):
    est, (X, y, _) = fitted
    context, xq, yq = context_and_query(X, y)
    expected = est.predict(xq, context=context).log_prob(torch.as_tensor(yq)).mean()
    assert est.score(xq, yq, context=context) == pytest.approx(expected.item(), rel=1e-12)


def test_no_context_is_the_prior_predictive(fitted):
    est, (X, y, _) = fitted
    empty = (X[:0], y[:0])
    assert torch.equal(est.predict(X[:5]).mean, est.predict(X[:5], context=empty).mean)


def test_sample_draws_functions_in_the_users_units(fitted):
    est, (X, y, _) = fitted
    context, xq, _ = context_and_query(X, y)
    draws = est.sample(xq, context=context, num_samples=3, seed=0)
    assert draws.shape == (3, 9) and torch.equal(draws, est.sample(xq, context=context, num_samples=3, seed=0))


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    est, (X, y, _) = fitted
    context, xq, yq = context_and_query(X, y)
    est.save(tmp_path / "est")
    assert sorted(p.name for p in (tmp_path / "est").iterdir()) == [
        "config.json",
        "estimator.json",
        "model.safetensors",
    ]
    loaded = NPRegressor.load(tmp_path / "est")
    before, after = est.predict(xq, context=context), loaded.predict(xq, context=context)
    assert torch.equal(before.mean, after.mean) and torch.equal(before.stddev, after.stddev)
    assert loaded.get_params() == est.get_params()
    assert loaded.score(xq, yq, context=context) == est.score(xq, yq, context=context)


def test_sklearn_clone_copies_the_parameters_not_the_fit(fitted):
    est, _ = fitted
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    assert copy.set_params(steps=3, window=5) is copy and copy.steps == 3 and copy.window == 5
    with pytest.raises(ValueError, match="not fitted yet"):
        copy.predict(np.zeros((2, 1)))


@pytest.mark.parametrize("head", ["gaussian", "mixture"])
def test_predictions_follow_the_units_of_the_data(head):
    """The same data in other units (x in ms and shifted, y times 30 plus 5000: x and y scaled
    differently, so un-scaling y with x's factor fails) trains the same model on the same
    standardised tasks: the predictive moves with y's units, exactly for any predictive head."""
    X, y, groups = curves()
    a = regressor("cnp", {"likelihood": head}).fit(X, y, groups=groups)
    b = regressor("cnp", {"likelihood": head}).fit(1000 * X - 7, 30 * y + 5000, groups=groups)
    pa = a.predict(X[6:15], context=(X[:6], y[:6]))
    pb = b.predict(1000 * X[6:15] - 7, context=(1000 * X[:6] - 7, 30 * y[:6] + 5000))
    assert torch.allclose(pb.mean, 30 * pa.mean + 5000, rtol=1e-5)
    assert torch.allclose(pb.stddev, 30 * pa.stddev, rtol=1e-4)
    assert torch.allclose(
        pb.log_prob(30 * torch.as_tensor(y[6:15]) + 5000),
        pa.log_prob(torch.as_tensor(y[6:15])) - np.log(30),
        atol=1e-4,
    )
    assert torch.allclose(pb.cdf(30 * torch.as_tensor(y[6:15]) + 5000), pa.cdf(torch.as_tensor(y[6:15])), atol=1e-5)


def test_a_mixture_head_keeps_its_exact_predictive_in_the_users_units():
    """With likelihood="mixture", predict is the model's mixture rescaled, not a Gaussian with
    its moments: log p(y) = log p_model((y - mean_y) / std_y) - log std_y."""
    X, y, groups = curves()
    est = regressor("cnp", {"likelihood": "mixture", "mixture_components": 3}).fit(X, y, groups=groups)
    pred = est.predict(X[6:15], context=(X[:6], y[:6]))
    xc, yc, xt = est._task(X[6:15], (X[:6], y[:6]))
    with torch.no_grad():
        own = est.model_(xc, yc, xt)
    mean, std = est.scaling_["y_mean"][0], est.scaling_["y_std"][0]
    target = torch.as_tensor(y[6:15])
    expected = own.log_prob(((target - mean) / std).view(1, -1, 1).float())[0].double() - np.log(std)
    assert torch.allclose(pred.log_prob(target), expected, atol=1e-5)
    moment_matched = torch.distributions.Normal(pred.mean, pred.stddev).log_prob(target)
    assert (pred.log_prob(target) - moment_matched).abs().max() > 1e-3  # not a Gaussian


def test_vector_and_column_outputs():
    X, y, groups = curves()
    est = regressor("cnp").fit(X, np.stack([y, -y], 1), groups=groups)
    pred = est.predict(X[6:15], context=(X[:6], np.stack([y[:6], -y[:6]], 1)))
    assert pred.batch_shape == (9,) and pred.event_shape == (2,)


def test_nan_y_is_refused_unless_missing_mask():
    X, y, groups = curves()
    y[[3, 17]] = np.nan
    with pytest.raises(ValueError, match=r"y has NaN in rows \[3, 17\]; pass missing='mask' to treat them as missing"):
        regressor("cnp").fit(X, y, groups=groups)


def test_missing_mask_ignores_nan_rows_like_removed_ones():
    X, y, groups = curves()
    y[[3, 17, 40]] = np.nan
    keep = ~np.isnan(y)
    masked = regressor("cnp", missing="mask").fit(X, y, groups=groups)
    removed = regressor("cnp").fit(X[keep], y[keep], groups=groups[keep])
    context = (X[:6], y[:6])  # row 3 is NaN: masked in the context too
    pred = masked.predict(X[6:15], context=context)
    assert torch.equal(pred.mean, removed.predict(X[6:15], context=(X[:6][keep[:6]], y[:6][keep[:6]])).mean)
    with pytest.raises(ValueError, match=r"y has NaN in rows \[3\]"):
        removed.predict(X[6:15], context=context)


def test_a_single_series_is_refused_with_the_window_option_offered():
    X, y, _ = curves(num_groups=1, points=40)
    with pytest.raises(ValueError, match=r"single group.*groups=.*window=W"):
        regressor("cnp").fit(X, y)
    est = regressor("cnp", window=12).fit(X, y)
    assert est.predict(X[:3], context=(X[3:10], y[3:10])).batch_shape == (3,)


def test_wrong_shapes_are_named():
    X, y, groups = curves()
    est = regressor("cnp").fit(X, y, groups=groups)
    with pytest.raises(ValueError, match=r"X must have 1 feature\(s\) per row \(as in fit\), got 2"):
        est.predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"context must be a pair \(Xc, yc\)"):
        est.predict(X[:3], context=X[:3])
    with pytest.raises(ValueError, match=r"train_options \['steps'\] are NPRegressor parameters"):
        regressor("cnp", train_options={"steps": 3}).fit(X, y, groups=groups)
    with pytest.raises(ValueError, match=r"train_options \['run_dir'\] are not TrainConfig fields"):
        regressor("cnp", train_options={"run_dir": "elsewhere"}).fit(X, y, groups=groups)


def test_an_interrupted_fit_resumes_from_its_run_dir(tmp_path):
    X, y, groups = curves()
    constant = {"schedule": "constant"}
    straight = regressor("cnp", steps=6, train_options=constant).fit(X, y, groups=groups)
    regressor("cnp", steps=3, train_options=constant, run_dir=tmp_path).fit(X, y, groups=groups)
    resumed = regressor("cnp", steps=6, train_options=constant, run_dir=tmp_path, resume=True).fit(X, y, groups=groups)
    query = (X[6:15], (X[:6], y[:6]))
    assert torch.equal(resumed.predict(*query).mean, straight.predict(*query).mean)
    assert [row["step"] for row in resumed.history_][-1] == 6


def test_predict_is_a_torch_distribution(fitted):
    est, (X, _, _) = fitted
    assert isinstance(est.predict(X[:2]), Distribution)


def test_empty_or_unobserved_data_is_one_line_naming_it():
    """No numpy warnings, no traceback from inside a reduction: one ValueError per mistake."""
    X, y, groups = curves()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^X is empty \(0 rows\)"):
            regressor("cnp").fit(np.zeros((0, 1)), np.zeros(0), groups=np.zeros(0))
        with pytest.raises(ValueError, match=r"^X is empty \(0 rows\)"):
            regressor("cnp").fit([], [], groups=[])
        with pytest.raises(ValueError, match="y has no observed row: all 120 are missing"):
            regressor("cnp", missing="mask").fit(X, np.full_like(y, np.nan), groups=groups)
        est = regressor("cnp").fit(X, y, groups=groups)
        with pytest.raises(ValueError, match=r"^X is empty \(0 rows\)"):
            est.predict(np.zeros((0, 1)))
        prior = est.predict(X[:3], context=(np.zeros((0, 1)), np.zeros(0)))  # an empty context: the prior
        assert prior.mean.shape == (3,)
