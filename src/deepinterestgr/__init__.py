"""DeepInterestGR: generative recommendation with LLM-mined deep interests (arXiv 2602.18907)."""

__version__ = "0.1.0"
