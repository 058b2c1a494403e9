# This project's 2-core CPU, one core (OMP_NUM_THREADS=1) beside the scripts/beauty.sh run.
# B = no interests: SIDs from MiniLM embeddings of title, brand and categories (3 x 256 + suffix),
# no interest text; sft params identical to scripts/beauty.sh (params/B.yaml).
python bench/sft_beauty.py prepare --work /tmp/sftB --interests none --codes CODES.npy
cp WORKSPACE_OF_scripts/beauty.sh/params.yaml /tmp/sftB/params.yaml
(cd /tmp/sftB && python "$OLDPWD/stages/sft.py")
python bench/sft_beauty.py test --work /tmp/sftB
