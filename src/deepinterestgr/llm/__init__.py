"""LLM clients: providers' wire formats, the batch APIs, the answer cache and the job runner."""
