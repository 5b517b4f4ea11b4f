from npkit.baselines.gp import fit_gp, fitted_gp, gp_posterior, oracle

__all__ = ["fit_gp", "fitted_gp", "gp_posterior", "oracle"]
