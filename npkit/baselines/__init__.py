from npkit.baselines.gp import gp_posterior, oracle

__all__ = ["gp_posterior", "oracle"]
