"""Item representations: text encoder, item embeddings, RQ-VAE and Semantic IDs."""
