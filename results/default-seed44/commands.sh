dvc exp run -n default-seed44 -S base.seed=44
