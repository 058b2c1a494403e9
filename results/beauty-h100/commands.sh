# One NVIDIA H100 (lent for this run), all folders at once on the card.
# Work folders, prepared on the CPU machine:
#   A  = the sft stage's inputs of scripts/beauty.sh (LLM interests: data/label, data/rqvae
#        and data/mine of that experiment), B = no interests (SIDs from title, brand and
#        categories; bench/sft_beauty.py prepare --interests none), C = offline-miner interests
#        (labelled offline interests and their embed-stage SIDs).
#   Ag, Ax = grpo from A's SFT model: the full Interest-Aware Reward, and the exact hit only.
# params/<folder>.yaml is each folder's params.yaml (bench/sft_beauty.py set ...).
GRPO_WORKS=".gpu/Ag .gpu/Ax" bash bench/beauty_sft_gpu.sh $OUT/r .gpu/A .gpu/B .gpu/C
