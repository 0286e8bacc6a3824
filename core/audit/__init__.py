"""The memorization audit: nearest real neighbours of synthetic images and the two-reviewer review."""
