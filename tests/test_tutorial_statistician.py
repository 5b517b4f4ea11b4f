"""The Neural Statistician tutorial (docs/tutorials/statistician.py) at 30 steps: the summaries of
the sets, the silhouette it reports, the held-out ELBO, few-shot accuracy and generation."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import silhouette_score
from test_tutorials import finite, run


def test_statistician_summaries_silhouette_elbo_and_few_shot(tmp_path):
    result = run("statistician", 30, tmp_path)

    # One 32-dimensional summary (mean of q(c | D)) per held-out set, labelled by the set's digit;
    # the silhouette the script prints is scikit-learn's on exactly these summaries and labels.
    for name, (means, labels) in result["embeddings"].items():
        assert means.shape == (500, 32) and labels.shape == (500,), name
        assert set(labels.tolist()) == (set(range(5)) if "0-4" in name else set(range(5, 10))), name
        score = result["silhouette"][name]
        assert -1 <= score <= 1
        assert score == pytest.approx(silhouette_score(means.numpy(), labels.numpy()), abs=1e-9), name
    untrained, trained = (result["embeddings"][k][0] for k in ("untrained, seen 0-4", "trained, seen 0-4"))
    assert not torch.allclose(untrained, trained)  # the untrained copy is not the trained model

    # In eval mode a set's summary depends on that set alone, not on the order of its items nor
    # on the other sets of the batch (in training mode batch norm mixes the sets).
    model = result["model"]
    assert not model.training
    x = result["given"]  # [4, 5, 64]
    with torch.no_grad():
        together = model.statistic(x).mean
        alone = torch.cat([model.statistic(s[None]).mean for s in x])
        shuffled = model.statistic(x[:, torch.randperm(x.shape[1])]).mean
    assert together.shape == (4, 32)
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shuffled, together, atol=1e-5, rtol=1e-5)

    # The held-out ELBO terms add up, the KLs are non-negative, and 30 steps already raise the
    # ELBO above the untrained network's (a sign error in the objective would lower it).
    for elbo in (result["elbo"], result["elbo_untrained"]):
        assert finite(*elbo.values())
        assert elbo["elbo"] == pytest.approx(elbo["log_lik"] - elbo["kl_c"] - elbo["kl_z"])
        assert elbo["kl_c"] >= 0 and elbo["kl_z"] >= 0
    assert result["elbo"]["elbo"] > result["elbo_untrained"]["elbo"] + 1
    assert result["last_loss"] < result["first_loss"]

    # Few-shot accuracies for every features and group; the pixel baseline is far above chance
    # (0.2), so the episodes' labels and prototypes line up.
    assert set(result["few_shot"]) == {
        f"{features}, {group}"
        for features in ("trained", "untrained", "mean image")
        for group in ("seen 0-4", "unseen 5-9")
    }
    for accuracy in result["few_shot"].values():
        assert set(accuracy) == {1, 5} and all(0 <= a <= 1 for a in accuracy.values())
    assert result["few_shot"]["mean image, unseen 5-9"][5] > 0.6

    # Five images generated per given set, as pixel intensities.
    assert result["generated"].shape == (4, 5, 64)
    assert 0 <= result["generated"].min() and result["generated"].max() <= 1
