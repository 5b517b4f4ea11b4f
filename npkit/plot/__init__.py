"""Figures (matplotlib, PNG files).

- ``figures``: predictions with function samples and the GP oracle, prior samples, training
  curves, completion grids, context-fraction plots.
- ``sets``: the Neural Statistician's figures: posterior means, summaries, conditional samples.

The public names are in ``npkit`` (``npkit.plot_predictions``, ...).
"""
