"""Collapse diagnostics on constructed posteriors with known answers: a point mass, a posterior
independent of the data, a healthy one."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from npkit import build_model
from npkit.data import make_sampler
from npkit.evaluation.diagnostics import Diagnosis, diagnose, mutual_information


def constructed(posterior, z_gain: float = 1.0):
    """A small NP whose q(z | S) is ``posterior(x, y)`` (x, y [B, N, 1]) instead of its encoder's,
    with the decoder's weights on z multiplied by ``z_gain``."""
    torch.manual_seed(0)
    model = build_model("np", hidden_dim=8, r_dim=2, z_dim=2)
    with torch.no_grad():
        model.decoder.net[0].weight[:, model.decoder.in_dim :] *= z_gain

    class Constructed(type(model)):
        def posterior(self, x, y, mask=None):
            return posterior(x, y)

    model.__class__ = Constructed
    return model


def data_mean(x, y):
    """z mean = 5 (mean y, mean x y) of the set: depends on the data."""
    return 5 * torch.cat([y.mean(1), (x * y).mean(1)], -1)


def point_mass(x, y):
    return Independent(Normal(data_mean(x, y), 1e-4), 1)


def unused(x, y):
    return Independent(Normal(torch.zeros(len(x), 2), 1.0), 1)


def healthy(x, y):
    return Independent(Normal(data_mean(x, y), 0.5), 1)


SINE = make_sampler("sine", num_context=(2, 4), num_target=(3, 5))


def test_a_point_mass_posterior_is_diagnosed_as_collapsed():
    d = diagnose(constructed(point_mass), SINE, num_tasks=64, num_samples=10)
    assert d.std_context == pytest.approx(1e-4) and d.std_full == pytest.approx(1e-4)
    assert d.far_spread < 1e-3 and d.target_spread < 1e-3  # every function sample is the same function
    assert d.active_units == 2  # the means still follow the data
    assert d.mutual_information == pytest.approx(math.log(64), abs=1e-3)  # z names its task
    assert d.verdict == "collapsed: point mass"


def test_a_posterior_independent_of_the_data_is_an_unused_latent():
    d = diagnose(constructed(unused), SINE, num_tasks=64, num_samples=10)
    assert d.kl == pytest.approx(0, abs=1e-6) and d.active_units == 0
    assert abs(d.mutual_information) < 1e-6  # q(z | D) is the same for every task
    assert d.std_context == pytest.approx(1.0)
    assert d.verdict == "collapsed: latent unused"


def test_a_healthy_posterior_and_the_closed_form_kl():
    model = constructed(healthy, z_gain=10.0)  # a decoder that reads z: samples differ far from the data
    d = diagnose(model, SINE, num_tasks=64, num_samples=10)
    assert d.verdict == "healthy" and d.active_units == 2 and 0 < d.mutual_information < math.log(64)
    assert d.z_effect > d.target_spread > 0.05  # another task's z moves a prediction more than its own spread
    batch = SINE.sample(64, generator=torch.Generator().manual_seed(0))  # the tasks diagnose draws
    difference = data_mean(batch.x, batch.y) - data_mean(batch.xc, batch.yc)
    expected = (difference.square() / (2 * 0.5**2)).sum(-1).mean()  # KL of equal-std Gaussians
    assert d.kl == pytest.approx(expected.item(), rel=1e-5)
    assert d.std_full == pytest.approx(0.5)
    assert "healthy: posterior std 0.5000" in str(d) and d.as_dict()["verdict"] == "healthy"


def test_a_decoder_that_ignores_z_is_collapsed_even_with_a_wide_posterior():
    model = constructed(healthy, z_gain=0.0)  # the decoder's columns that read z are 0
    d = diagnose(model, SINE, num_tasks=64, num_samples=10)
    assert d.z_effect == d.far_spread == d.target_spread == 0 and d.std_context == pytest.approx(0.5)
    assert d.active_units == 2
    assert d.verdict == "collapsed: z ignored"


def test_mutual_information_is_log_n_for_separated_posteriors_and_0_for_equal_ones():
    separated = Independent(Normal(torch.arange(8.0).unsqueeze(-1) * 100, torch.ones(8, 1)), 1)
    assert mutual_information(separated, 4).item() == pytest.approx(math.log(8), abs=1e-6)
    same = Independent(Normal(torch.zeros(8, 3), torch.ones(8, 3)), 1)
    assert mutual_information(same, 4).item() == pytest.approx(0, abs=1e-6)


def test_verdict_thresholds():
    base = dict(std_full=0.01, kl=0.0, z_dim=2, mutual_information=0.0, num_tasks=10)

    def verdict(std, units, effect, at_targets, far):
        spreads = dict(z_effect=effect, target_spread=at_targets, far_spread=far)
        return Diagnosis(std, active_units=units, **spreads, **base).verdict

    assert verdict(0.01, 2, 0.0, 0.01, 0.01) == "collapsed: point mass"
    assert verdict(0.01, 2, 0.3, 0.2, 0.2) == "healthy"  # a narrow posterior the decoder amplifies
    assert verdict(0.3, 0, 0.0, 0.2, 0.2) == "collapsed: latent unused"
    assert verdict(0.3, 2, 0.01, 0.2, 0.2) == "collapsed: z ignored"
    assert verdict(0.3, 2, 0.3, 0.01, 0.2) == "overconfident"  # z matters, its posterior is too narrow
    assert verdict(0.3, 2, 0.3, 0.2, 0.01) == "overconfident"  # ... or the samples agree far away
    assert verdict(0.3, 2, 0.3, 0.2, math.nan) == "healthy"


def test_diagnose_refuses_deterministic_models_and_measures_far_spread_where_told():
    with pytest.raises(TypeError, match="needs a latent model"):
        diagnose(build_model("cnp", hidden_dim=8, r_dim=8), SINE)
    image_model = build_model("np", x_dim=2, hidden_dim=8, r_dim=8, z_dim=2)
    assert math.isnan(diagnose(image_model, make_sampler("digits"), num_tasks=4, num_samples=3).far_spread)
    d = diagnose(image_model, make_sampler("digits"), num_tasks=4, num_samples=3, far_x=torch.tensor([[2.0, 2.0]]))
    assert d.num_tasks == 4 and d.z_dim == 2 and d.far_spread > 0
    with pytest.raises(ValueError, match=r"far_x must be \[N_far, 2\]"):
        diagnose(image_model, make_sampler("digits"), num_tasks=4, far_x=torch.zeros(3))


def test_diagnose_leaves_the_callers_random_state_alone():
    model = constructed(healthy)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    diagnose(model, SINE, num_tasks=8, num_samples=3)
    assert torch.equal(torch.rand(3), expected)


def test_training_logs_the_diagnostics_without_changing_the_trajectory():
    from npkit import fit

    def run(**options):
        torch.manual_seed(0)
        model = build_model("np", hidden_dim=8, r_dim=2, z_dim=2)
        rows = fit(model, SINE, steps=6, log_every=2, progress=False, **options)
        return model, rows

    plain, _ = run()
    monitored, rows = run(diagnose_every=3)
    assert [r["step"] for r in rows if "diag/kl" in r] == [3, 6]
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), monitored.parameters()))
    with pytest.raises(ValueError, match="diagnose_every needs a latent model"):
        fit(build_model("cnp", hidden_dim=8, r_dim=8), SINE, steps=1, diagnose_every=1, progress=False)


def test_npkit_diagnose_prints_and_writes_the_diagnosis(tmp_path, capsys):
    import json

    from npkit.cli import main

    run, cnp = tmp_path / "np", tmp_path / "cnp"
    assert main(["train", "sine5-np", "--run-dir", str(run), "--set=train.steps=3", "--set=train.progress=false"]) == 0
    assert main(["diagnose", str(run), "--num-tasks", "16", "--num-samples", "4"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((run / "diagnostics.json").read_text())
    assert f"np on sine5 (16 tasks, seed 0): {saved['verdict']}: posterior std" in out
    assert saved["num_tasks"] == 16 and saved["z_dim"] == 2
    assert main(["train", "sine-cnp", "--run-dir", str(cnp), "--set=train.steps=1", "--set=train.progress=false"]) == 0
    assert main(["diagnose", str(cnp)]) == 2
    assert "holds a cnp, which has no latent variable" in capsys.readouterr().err
