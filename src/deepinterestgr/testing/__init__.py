"""Test doubles shared by ``tests/`` and ``bench/``: a fake LLM API server and a tiny stage folder.

Nothing in the pipeline imports this package; it ships with the library so that the tests and
the benchmarks use one copy of each double (a benchmark never imports from ``tests/``).
"""
