from npkit.baselines.gp import fit_gp, fitted_gp, gp_posterior, oracle
from npkit.baselines.knn import knn_predictive

__all__ = ["fit_gp", "fitted_gp", "gp_posterior", "knn_predictive", "oracle"]
