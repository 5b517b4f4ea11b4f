"""The amortised-inference tutorial (docs/tutorials/amortized.py) at a tiny budget: the Deep Prior's
KL estimates agree with the closed form, and the VAE trained by Pyro SVI on npkit's model/guide pair
follows npkit.fit's run, with Pyro's loss equal to npkit's ELBO on the same parameters."""

from __future__ import annotations

from test_tutorials import finite, run


def test_amortized_deep_prior_kl_and_the_pyro_bridge_agree_with_npkit(tmp_path):
    result = run("amortized", 30, tmp_path)

    # Deep Prior: every score is a number, for both posteriors and every context size.
    for posterior in ("gaussian", "iaf"):
        per_k = result["deep_prior"][posterior]
        assert set(per_k) == {1, 4, 16}
        assert finite(*(s[m] for s in per_k.values() for m in ("mse", "tar_ll")), result["deep_prior_elbo"][posterior])
        assert result["deep_prior_kl"][posterior]["monte_carlo"] > -0.05  # a KL: >= 0 up to Monte-Carlo error
    # The Monte-Carlo KL (log q - log p at q's own samples) matches torch's closed form for the
    # Gaussian posterior: a wrong log q, or z drawn from something else than q, would not.
    kl = result["deep_prior_kl"]["gaussian"]
    assert abs(kl["monte_carlo"] - kl["closed_form"]) < 0.03 * kl["closed_form"] + 0.01

    # Pyro's -ELBO of npkit's model/guide pair, divided by the images, equals npkit's vae_elbo on
    # the same parameters and noise (a missing beta scale, or a sum left undivided, would not).
    assert abs(result["pyro_loss"] - result["npkit_loss"]) < 1e-3
    # SVI and fit start from the same weights and see the same batches and noise, with a constant
    # learning rate: the two runs stay together (losses, test scores, parameters).
    last = result["vae_last_loss"]
    assert abs(last["npkit fit"] - last["Pyro SVI"]) < 0.05
    scores = result["vae"]
    assert abs(scores["npkit fit"]["elbo"] - scores["Pyro SVI"]["elbo"]) < 0.1
    assert result["vae_parameter_gap"] < 0.05
    # and SVI trained: the loss per image fell (from about 64 log 2 = 44 nats at the start).
    first, final = result["svi_loss"]
    assert final < first - 5
    # importance sampling with 500 z bounds log p(x) more tightly than the ELBO with 10 z
    assert scores["npkit fit"]["log_px"] > scores["npkit fit"]["elbo"]
