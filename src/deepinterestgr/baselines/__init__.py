"""Baselines ranked under the project's evaluation protocol: popularity and SASRec."""
