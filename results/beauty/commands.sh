NAME=beauty bash scripts/beauty.sh   # at commit 00a6e39
