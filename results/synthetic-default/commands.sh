source .venv/bin/activate
dvc repro
