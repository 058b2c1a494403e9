bash scripts/setup.sh && source .venv/bin/activate && dvc repro   # README command 1, base.seed 42
