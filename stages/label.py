"""label stage: judge a sample of mined interests, learn the judge, label every interest.

Reads  ``--dataset`` (items), ``--interests`` (mined item interests).
Writes ``--labelled``: ``items.jsonl`` (interests with p_positive and positive), ``quality.npy``
       (float32 [N], q_i), ``judged.jsonl`` (the judged sample); ``--metrics`` (held-out AUC,
       accuracy, Brier, ECE against the judge; q_i spread).
Params base, label, mine.llms (the backend that label.llm_judge.backend names). Sentence
embeddings are cached in ``--embedding-cache`` and LLM judge answers in ``--judge-cache``
(outside DVC: a content-addressed cache cannot go stale, and a rerun must not pay for them
again). Paths come from the command in ``dvc.yaml``.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("label")  # all params checked, outputs locked: before the slow imports below

import logging

from deepinterestgr.common import io
from deepinterestgr.common.artifacts import LabelledInterestFiles, command_line_files
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

FILES = command_line_files("label")  # paths from the command in dvc.yaml

log = logging.getLogger("label")


def main() -> None:
    base, params = load("base"), load("label")
    seed_everything(base.seed)
    if params.judge == "llm":  # first: a missing API key fails before any work
        backend = load("mine").llms[params.llm_judge.backend]
        judge = LLMJudge(params.llm_judge, backend, FILES.judge_cache, base.seed)
    else:
        judge = make_offline_judge(
            params.offline_judge.lexical_weight, params.offline_judge.threshold
        )
    items = io.read_items(FILES.dataset.items)
    mined = FILES.interests.items
    rows = io.align_item_interests(io.read_item_interests(mined), len(items), mined)
    evidence = [evidence_text(item, params.evidence) for item in items]

    cache = EmbeddingCache(FILES.embedding_cache)
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
    with io.new_folder(FILES.labelled.folder) as folder:  # swapped in whole once written
        written = LabelledInterestFiles(folder)
        io.write_item_interests(written.items, result.rows)
        io.save_array(written.quality, result.quality)
        io.write_jsonl(written.judged, result.judged)
    io.write_json(FILES.metrics, {"judge": params.judge, **result.metrics})
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
