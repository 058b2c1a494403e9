NAME=beauty-peers bash scripts/beauty_peers.sh -S base.num_threads=1
