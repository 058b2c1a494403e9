dvc exp run -n default-seed43 -S base.seed=43
