"""The generative recommender: model, tokenizer, SFT data and training, GRPO, rewards, decoding."""
