"""Screening synthetic images: decisions, the final rule and Table S1, CSV, the pre-screen, the release."""
