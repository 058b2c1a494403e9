"""Ranking metrics and the evaluation of rankers and of the generative recommender."""
