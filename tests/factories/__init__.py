"""Builders and helpers the tests share: small studies, checkpoints, images, waiting on apps and jobs."""
