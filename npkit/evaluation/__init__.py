"""Evaluation: what a trained model is worth, and what went wrong in it.

- ``metrics``: log-likelihoods (marginal, joint, autoregressive), MSE and coverage on cached,
  seeded evaluation sets, beside the GP baselines and kNN; result tables.
- ``completion``: image completion against the fraction of pixels observed, sample diversity.
- ``diagnostics``: posterior-collapse measures and the training-time monitor.
- ``statistician``: the Neural Statistician's posterior means, silhouette, few-shot accuracy and
  summary points.

The public names are in ``npkit`` (``npkit.evaluate``, ``npkit.diagnose``,
``npkit.posterior_means``, ...).
"""
