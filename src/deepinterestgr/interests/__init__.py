"""Deep interests: mining (LLM, offline, precomputed), merging, screening and labelling."""
