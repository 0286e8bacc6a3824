"""The DDPM: networks, EMA, training data, trainer, evaluation, checkpoints, samplers, sampling jobs, synthetic runs."""
