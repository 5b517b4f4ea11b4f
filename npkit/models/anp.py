"""Attentive Neural Process (Kim et al. 2019)."""

from npkit.models.base import AttentiveEncoder, LatentEncoder, ModelConfig, NeuralProcess


class ANP(NeuralProcess):
    """Self-attention encoders on both paths; multi-head cross-attention from each target to the
    context on the deterministic path; latent path z ~ q(z | C) as in the NP."""

    name = "anp"
    is_latent = True

    def build_deterministic(self, cfg: ModelConfig) -> AttentiveEncoder:
        return AttentiveEncoder(cfg)

    def build_latent(self, cfg: ModelConfig) -> LatentEncoder:
        return LatentEncoder(cfg, self_attention=True)
