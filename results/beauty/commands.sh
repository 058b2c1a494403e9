NAME=beauty bash scripts/beauty.sh 
