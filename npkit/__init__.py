"""npkit: Neural Processes and their relatives, with GP baselines, training, evaluation and plots.

    import npkit
    model = npkit.build_model("np")
    npkit.fit(model, npkit.make_sampler("gp1d"), steps=2000)
    pred = model(xc, yc, xt, num_samples=16)     # a torch.distributions.Distribution

Heavy parts (GPyTorch baselines, matplotlib plots, Lightning Fabric) load on first use.
"""

from importlib import import_module

from npkit.autoregressive import ar_log_prob, ar_sample
from npkit.data import (
    PRESETS,
    FivePointSine,
    GPSampler,
    GroupedTasks,
    ImageSampler,
    SawtoothSampler,
    SineSampler,
    TaskSampler,
    make_sampler,
)
from npkit.likelihoods import LIKELIHOODS, Bernoulli, Gaussian, GaussianMixture, Likelihood, StudentTHead
from npkit.models import (
    ANP,
    CANP,
    CNP,
    MODELS,
    NP,
    TNPD,
    VAE,
    ANPConfig,
    CANPConfig,
    ConvCNP,
    ConvCNPConfig,
    DeepPrior,
    DeepPriorConfig,
    Family,
    LatentCNP,
    LatentConfig,
    ModelConfig,
    NeuralProcess,
    NeuralStatistician,
    StatisticianConfig,
    TNPConfig,
    VAEConfig,
    build_model,
    register_model,
)
from npkit.objectives import (
    OBJECTIVES,
    KLAnnealing,
    LossOutput,
    elbo,
    get_objective,
    importance_log_likelihood,
    iwae,
    ml,
    nll,
    vae_elbo,
)
from npkit.predictive import Rescaled, SampleMixture, logmeanexp, predict, sample_functions
from npkit.runs import CheckpointError, load_model, metrics_csv, save_model
from npkit.tasks import Batch
from npkit.train import TrainConfig, TrainingInterrupted, fit, training_log

_LAZY = {
    "evaluate": "npkit.evaluation.metrics",
    "evaluate_gp": "npkit.evaluation.metrics",
    "evaluate_knn": "npkit.evaluation.metrics",
    "make_eval_set": "npkit.evaluation.metrics",
    "cached_eval_set": "npkit.evaluation.metrics",
    "EvalSet": "npkit.evaluation.metrics",
    "format_table": "npkit.evaluation.metrics",
    "oracle": "npkit.baselines.gp",
    "fitted_gp": "npkit.baselines.gp",
    "fit_gp": "npkit.baselines.gp",
    "gp_posterior": "npkit.baselines.gp",
    "hyper_marginal_gp": "npkit.baselines.bayes_gp",
    "plot_predictions": "npkit.plot.figures",
    "plot_prior_samples": "npkit.plot.figures",
    "plot_training_curves": "npkit.plot.figures",
    "plot_completion": "npkit.plot.figures",
    "plot_fractions": "npkit.plot.figures",
    "diagnose": "npkit.evaluation.diagnostics",
    "CollapseMonitor": "npkit.evaluation.diagnostics",
    "fraction_tasks": "npkit.evaluation.completion",
    "evaluate_fractions": "npkit.evaluation.completion",
    "sample_diversity": "npkit.evaluation.completion",
    "np_model_guide": "npkit.pyro",
    "vae_model_guide": "npkit.pyro",
    "train_svi": "npkit.pyro",
    "train_vae_svi": "npkit.pyro",
    "NPRegressor": "npkit.estimator",
    "make_face_folder": "npkit.data.faces",
    "format_fraction_table": "npkit.evaluation.completion",
    "posterior_means": "npkit.evaluation.statistician",
    "silhouette": "npkit.evaluation.statistician",
    "few_shot_accuracy": "npkit.evaluation.statistician",
    "mean_item": "npkit.evaluation.statistician",
    "elbo_on": "npkit.evaluation.statistician",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'npkit' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "CANPConfig",
    "ConvCNPConfig",
    "NeuralStatistician",
    "StatisticianConfig",
    "TNPConfig",
    "ar_log_prob",
    "ar_sample",
    "ANP",
    "CANP",
    "CNP",
    "LIKELIHOODS",
    "MODELS",
    "NP",
    "OBJECTIVES",
    "PRESETS",
    "ANPConfig",
    "Batch",
    "Bernoulli",
    "CheckpointError",
    "ConvCNP",
    "DeepPrior",
    "DeepPriorConfig",
    "Family",
    "FivePointSine",
    "GPSampler",
    "Gaussian",
    "GaussianMixture",
    "GroupedTasks",
    "ImageSampler",
    "KLAnnealing",
    "LatentCNP",
    "LatentConfig",
    "Likelihood",
    "LossOutput",
    "ModelConfig",
    "NeuralProcess",
    "Rescaled",
    "SampleMixture",
    "SawtoothSampler",
    "SineSampler",
    "StudentTHead",
    "TNPD",
    "TaskSampler",
    "TrainConfig",
    "TrainingInterrupted",
    "VAE",
    "VAEConfig",
    "build_model",
    "elbo",
    "fit",
    "get_objective",
    "importance_log_likelihood",
    "iwae",
    "load_model",
    "logmeanexp",
    "make_sampler",
    "metrics_csv",
    "ml",
    "nll",
    "predict",
    "register_model",
    "sample_functions",
    "training_log",
    "save_model",
    "vae_elbo",
    *_LAZY,
]
