"""Image-set metrics: FID/KID with their extractors and cached statistics, embeddings for audit and pre-screen."""
