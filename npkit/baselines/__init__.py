from npkit.baselines.bayes_gp import HyperMarginal, hyper_marginal_gp
from npkit.baselines.gp import fit_gp, fitted_gp, gp_posterior, oracle
from npkit.baselines.knn import knn_predictive

__all__ = ["HyperMarginal", "fit_gp", "fitted_gp", "gp_posterior", "hyper_marginal_gp", "knn_predictive", "oracle"]
