PREFIX=default- bash scripts/ablations.sh 
