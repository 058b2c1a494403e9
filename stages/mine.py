"""Stage ``mine``: deep interests of every item and user, from several backends, merged.

Reads:   ``--dataset``: items, users (training part of each history only), item images (for
         LLMs with ``images: true``); the ``precomputed`` file when that backend is listed.
Writes:  ``--interests``: ``items.jsonl`` (io.ItemInterests, merged, strongest first),
         ``users.jsonl`` (io.UserInterests), ``raw/<backend>.jsonl`` (one raw record per LLM
         request: reasoning, answer texts, tokens, failure reason), ``rejected.jsonl``
         (descriptors the injection screen dropped, with the reason); ``--metrics`` (jobs,
         cached, failed, tokens and estimated cost per backend). Paths come from ``dvc.yaml``.
         LLM answers are cached in ``--answer-cache`` (kept across runs; a rerun pays nothing).
Params:  base.seed, mine.* (backends, prompt versions, model names, limits, prices, cap).
API keys come only from the environment variables that ``mine.llms.<name>.api_key_env`` names.
"""

from __future__ import annotations

from deepinterestgr.common.stage_guard import begin

begin("mine")  # all params checked, outputs locked: before the slow imports below

import logging

from deepinterestgr.common import io
from deepinterestgr.common.artifacts import InterestFiles, command_line_files
from deepinterestgr.common.params import load
from deepinterestgr.common.seeding import seed_everything
from deepinterestgr.interests.mining import mine_interests, summary

FILES = command_line_files("mine")  # paths from the command in dvc.yaml

log = logging.getLogger("mine")


def main() -> None:
    # One line per HTTP request would drown the progress bar (URLs only, never keys).
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base, params = load("base"), load("mine")
    seed_everything(base.seed)
    items, users = io.read_items(FILES.dataset.items), io.read_users(FILES.dataset.users)
    log.info(
        "%s items, %s users; backends: %s",
        f"{len(items):,}",
        f"{len(users):,}",
        ", ".join(params.backends),
    )

    output = mine_interests(
        params, items, users, FILES.dataset.folder, FILES.answer_cache, seed=base.seed
    )

    with io.new_folder(FILES.interests.folder) as folder:  # swapped in whole once written
        written = InterestFiles(folder)
        io.write_item_interests(written.items, output.items)
        io.write_user_interests(written.users, output.users)
        for name, outcomes in output.raw.items():
            io.write_jsonl(written.raw(name), (o.to_json() for o in outcomes))
        io.write_jsonl(written.rejected, (r.to_record() for r in output.rejected))
    metrics = summary(output)
    io.write_json(FILES.metrics, metrics)
    log.info(
        "wrote %s item rows (%.2f descriptors each, %.2f models per descriptor), %s user rows, "
        "estimated cost $%.4f",
        f"{len(output.items):,}",
        metrics["descriptors_per_item"],
        metrics["models_per_descriptor"],
        f"{len(output.users):,}",
        metrics["cost_usd"],
    )


if __name__ == "__main__":
    main()
