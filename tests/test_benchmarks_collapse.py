"""benchmarks/collapse.py and the sine5-critique preset: the critique's loss (targets only) and its
exact, unnormalised form; a few training steps at most."""

from __future__ import annotations

import pytest
import torch
from conftest import benchmark_script

from npkit.config import load_config, split_section
from npkit.models import build_model
from npkit.objectives import elbo


@pytest.fixture(scope="module")
def collapse():
    with benchmark_script("collapse") as module:
        yield module


@pytest.fixture(scope="module")
def critique_model():
    name, options = split_section(load_config("sine5-critique")["model"])
    torch.manual_seed(0)
    return build_model(name, **options)


def test_the_preset_scores_the_targets_only_as_the_critique():
    """The critique's loss scores decoder(x_t, z) at the non-context points only."""
    objective = load_config("sine5-critique")["objective"]
    assert objective["name"] == "elbo" and objective["include_context"] is False
    assert objective["prior"] == "conditional" and objective["num_samples"] == 10


def test_critique_loss_is_the_preset_loss_times_the_number_of_targets(collapse, critique_model):
    """npkit's elbo divides both terms by the scored points; the critique sums them."""
    sampler = collapse.task_sampler("sine5")
    for i in range(6):
        batch = sampler.sample(1, torch.Generator().manual_seed(i))
        torch.manual_seed(1)
        preset = elbo(critique_model, batch, num_samples=10, include_context=False)
        torch.manual_seed(1)
        exact = collapse.CritiqueLoss(10)(critique_model, batch)
        assert exact.loss.item() == pytest.approx(batch.num_target * preset.loss.item(), rel=1e-5)
        assert exact.log_lik.item() == pytest.approx(preset.log_lik.item(), rel=1e-5)
        assert exact.kl.item() == pytest.approx(preset.kl.item(), rel=1e-5, abs=1e-6)


def test_five_point_spread_leaves_the_random_state_alone(collapse, critique_model):
    state = torch.get_rng_state()
    spread = collapse.five_point_spreads(critique_model)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(spread) == {"spread_five_left", "spread_five_right", "spread_five_data"}
    assert min(spread.values()) > 0 and spread == collapse.five_point_spreads(critique_model)


def test_run_one_records_the_loss_and_the_five_point_spread(collapse):
    result = collapse.run_one("normal(0, 1) weights only", "baseline", 0, 3, loss="sum")
    assert result["loss"] == "sum" and set(result["snapshots"]) == {0}
    assert result["snapshots"][0]["spread_five_right"] > 0
    with pytest.raises(ValueError, match="baseline"):
        collapse.run_one("normal(0, 1)", "iwae (10 samples)", 0, 3, loss="sum")


def test_all_points_results_keep_their_committed_names(collapse):
    """study files of the all-points loss predate --loss; the others carry it in the name."""
    assert collapse._slug("normal(0, 1)", "baseline", 0, 25000) == "normal0_1-baseline-0-25000"
    assert collapse._slug("normal(0, 1)", "baseline", 0, 9000, "targets").endswith("-targets")
