"""Stage ``peers``: independent recommenders from the cornac library, beside our baselines.

Reads ``--dataset`` (items, users) and our SASRec (``sasrec.pt`` of ``--baselines``). Writes
``--metrics``: for every peer in ``peers.run``,
its test HR@K / NDCG@K by our evaluation under the protocol's ``exclude_history`` (``test``) and
under the other setting, by cornac's own evaluation (``test_cornac_eval``: seen items kept),
the largest per-user disagreement between cornac's and our evaluation with seen items kept,
the paired-bootstrap interval of peer minus our SASRec under both settings, and its training
wall and CPU time; our SASRec's test metrics under both settings as the reference.
With ``peers.run: []`` (the default) it writes an empty report and never imports cornac.
Params: ``base.seed``, ``peers``, ``evaluate.ks``, ``evaluate.exclude_history``, and
``embed.encoder`` / ``text`` / ``normalize`` / ``batch_size`` (TIGER's item vectors only).
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("peers")  # all params checked, outputs locked: before the slow imports below

import logging

import numpy as np

from deepinterestgr.baselines.peers import (
    CornacRanker,
    build_peer,
    check_peers,
    cornac_evaluation,
    difference_intervals,
    fit_peer,
    largest_disagreement,
    leave_last_out,
)
from deepinterestgr.baselines.sasrec import SASRecRanker, load_checkpoint
from deepinterestgr.common import params
from deepinterestgr.common.artifacts import command_line_files
from deepinterestgr.common.io import read_items, read_users, write_json
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.evaluation.metrics import user_hits, user_ndcg
from deepinterestgr.evaluation.ranking import Ranker, evaluate_ranker
from deepinterestgr.items.embedding import evidence_text, sentence_encoder

SETTINGS = (True, False)  # exclude_history: our protocol's default, then cornac's

FILES = command_line_files("peers")  # paths from the command in dvc.yaml
log = logging.getLogger("peers")


def test_by_setting(ranker: Ranker, users, ks, batch_size: int) -> dict:
    return {flag: evaluate_ranker(ranker, users, "test", ks, flag, batch_size) for flag in SETTINGS}


def main() -> None:
    base, config, evaluate = params.load("base"), params.load("peers"), params.load("evaluate")
    check_peers(config.run, config.models)  # before reading data or training anything
    if not config.run:
        write_json(FILES.metrics, {"exclude_history": evaluate.exclude_history, "peers": {}})
        log.info("peers.run is empty: nothing to train; wrote %s", FILES.metrics)
        return
    seed_everything(base.seed)

    items, users = read_items(FILES.dataset.items), read_users(FILES.dataset.users)
    log.info("read %s items and %s users", f"{len(items):,}", f"{len(users):,}")
    features = None
    if "tiger" in config.run:  # TIGER quantises content vectors: the item text, no interests
        embed = params.load("embed")
        encode = sentence_encoder(embed.encoder, embed.normalize, embed.batch_size)
        features = np.asarray(encode([evidence_text(item, embed.text) for item in items]))
    method = leave_last_out(users, base.seed, features)

    def other(flag: bool) -> str:
        return f"test_exclude_history_{str(not flag).lower()}"

    protocol = evaluate.exclude_history
    ours = test_by_setting(
        SASRecRanker(load_checkpoint(FILES.baselines.sasrec)),
        users,
        evaluate.ks,
        config.eval_batch_size,
    )
    report = {
        "exclude_history": protocol,
        "num_users": len(users),
        "num_items": len(items),
        "num_items_known_to_cornac": len(method.global_iid_map),
        "reference": {
            "sasrec": {
                "test": ours[protocol].to_dict(),
                other(protocol): ours[not protocol].to_dict(),
            }
        },
        "peers": {},
    }
    for name in config.run:
        log.info("peer %s: training cornac's model", name)
        fit = fit_peer(build_peer(name, config.models[name], base.seed), method)
        ranker = CornacRanker(fit.model, method.global_iid_map, len(items))
        theirs = cornac_evaluation(fit.model, method, users, evaluate.ks)
        mine = test_by_setting(ranker, users, evaluate.ks, config.eval_batch_size)
        kept = mine[False].ranks
        per_user = {
            f"{kind}@{k}": f(kept, k)
            for k in evaluate.ks
            for kind, f in (("hr", user_hits), ("ndcg", user_ndcg))
        }
        b = config.bootstrap
        report["peers"][name] = {
            "test": mine[protocol].to_dict(),
            other(protocol): mine[not protocol].to_dict(),
            "test_cornac_eval": {**theirs.metrics, "exclude_history": False},
            "cornac_eval_max_user_difference": largest_disagreement(per_user, theirs.per_user),
            "vs_sasrec": {
                f"exclude_history_{str(flag).lower()}": difference_intervals(
                    ours[flag].ranks, mine[flag].ranks, b.k, b.resamples, b.confidence, base.seed
                )
                for flag in SETTINGS
            },
            "train_wall_time_s": round(fit.wall_time_s, 1),
            "train_cpu_time_s": round(fit.cpu_time_s, 1),
        }
        log.info("peer %s: %s", name, report["peers"][name]["vs_sasrec"])
    write_json(FILES.metrics, report)
    log.info("wrote %s", FILES.metrics)


if __name__ == "__main__":
    main()
