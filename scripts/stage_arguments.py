"""Print the arguments ``dvc.yaml`` gives a stage, to run the stage outside DVC the same way.

accelerate launch --num_processes 4 stages/sft.py $(python scripts/stage_arguments.py sft)
"""

from __future__ import annotations

import argparse
import shlex

from deepinterestgr.common.artifacts import STAGE_FILES, stage_arguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGE_FILES))
    print(shlex.join(stage_arguments(parser.parse_args().stage)))


if __name__ == "__main__":
    main()
