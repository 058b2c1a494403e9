"""label stage: judge a sample of mined interests, learn the judge, label every interest.

Reads  data/download/items.jsonl (items), data/mine/items.jsonl (mined item interests).
Writes data/label/items.jsonl (interests with p_positive and positive),
       data/label/quality.npy (float32 [N], q_i), data/label/judged.jsonl (the judged sample),
       metrics/label.json (held-out AUC, accuracy, Brier, ECE against the judge; q_i spread).
Params base, label, mine.llms (the backend that label.llm_judge.backend names). Sentence
embeddings are cached in data/cache/embeddings and LLM judge answers in data/cache/llm_judge
(outside DVC: a content-addressed cache cannot go stale, and a rerun must not pay for them
again).
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("label")  # all params checked, outputs locked: before the slow imports below

import logging
from pathlib import Path

from deepinterestgr.common import io
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.interests.labeling import label_interests, make_offline_judge
from deepinterestgr.interests.llm_judge import LLMJudge
from deepinterestgr.items.embedding import (
    EmbeddingCache,
    embed_texts,
    evidence_text,
    sentence_encoder,
)

ITEMS = Path("data/download/items.jsonl")
MINED = Path("data/mine/items.jsonl")
OUT = Path("data/label")
CACHE = Path("data/cache/embeddings")
LLM_CACHE = Path("data/cache/llm_judge")
METRICS = Path("metrics/label.json")

log = logging.getLogger("label")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base, params = load("base"), load("label")
    seed_everything(base.seed)
    if params.judge == "llm":  # first: a missing API key fails before any work
        backend = load("mine").llms[params.llm_judge.backend]
        judge = LLMJudge(params.llm_judge, backend, LLM_CACHE, base.seed)
    else:
        judge = make_offline_judge(
            params.offline_judge.lexical_weight, params.offline_judge.threshold
        )
    items = io.read_items(ITEMS)
    rows = io.align_item_interests(io.read_item_interests(MINED), len(items), MINED)
    evidence = [evidence_text(item, params.evidence) for item in items]

    cache = EmbeddingCache(CACHE)
    encoder = sentence_encoder(params.encoder, normalize=True, batch_size=params.batch_size)

    def embed(texts):
        return embed_texts(texts, encoder, cache, params.encoder, True, params.batch_size).vectors

    result = label_interests(
        rows,
        evidence,
        embed,
        judge,
        params.sample_size,
        params.test_fraction,
        params.classifier,
        params.threshold,
        params.empty_quality,
        params.ece_bins,
        base.seed,
    )
    with io.new_folder(OUT) as folder:  # swapped in whole once every file is written
        io.write_item_interests(folder / "items.jsonl", result.rows)
        io.save_array(folder / "quality.npy", result.quality)
        io.write_jsonl(folder / "judged.jsonl", result.judged)
    io.write_json(METRICS, {"judge": params.judge, **result.metrics})
    m = result.metrics
    log.info(
        "labelled %s interests of %s items (%.1f%% positive); judge sample %s, held-out AUC %.3f, "
        "accuracy %.3f, ECE %.3f; mean q_i %.3f",
        f"{m['interests']:,}",
        f"{m['items']:,}",
        100 * m["positive_share"],
        f"{m['judge_sample']:,}",
        m["auc"],
        m["accuracy"],
        m["ece"],
        m["q_mean"],
    )


if __name__ == "__main__":
    main()
