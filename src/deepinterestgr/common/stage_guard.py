"""What every stage does before its work: check all params, lock its outputs, one-line errors.

Each script in ``stages/`` calls :func:`begin` as its first statement, before its heavy
imports (torch and transformers take seconds), so that:

1. every section of ``params.yaml`` is loaded and validated (:func:`params.load_all`): a bad
   ``dvc exp run -S ...`` fails in about a second, before the stage reads or writes anything,
   whichever stage DVC happens to run first;
2. the stage holds an exclusive lock on ``data/locks/<stage>.lock`` for as long as its
   process lives, so a second writer of the same outputs (a stage orphaned by a killed
   ``dvc``, then a second ``dvc repro``) refuses to start and names the process that writes.
   The kernel drops the lock when its holder dies, even by ``kill -9``: no stale lock to clear;
3. the stage computes with ``base.num_threads`` CPU threads (set before torch loads): the
   order of floating-point sums, hence the last bits of every result, depends on it;
4. every stage logs the same way (time, logger, level, message, from INFO up), and progress
   bars show waits a person sits through (training, encoding, decoding) without flooding a
   log: off a terminal they redraw at most every 30 s, and the sub-second bars of loading and
   saving a model stay off;
5. an error of the pipeline's own (:class:`~deepinterestgr.common.errors.PipelineError`: bad
   params, a malformed record, a missing key, too many failed answers) or a missing file ends
   the stage with one line on stderr and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path
from types import TracebackType

from deepinterestgr.common import params
from deepinterestgr.common.errors import PipelineError

LOCK_DIR = Path("data/locks")  # not a DVC output: DVC deletes those before a stage starts

_held: dict[str, int] = {}  # stage -> descriptor of its lock file, open until the process ends


class StageBusy(RuntimeError, PipelineError):
    """Another live process holds the stage's lock: it is writing the same outputs."""


def begin(
    stage: str, params_file: str | Path = params.PARAMS_FILE, lock_dir: str | Path = LOCK_DIR
) -> None:
    """One-line errors from here on, every params section checked, the stage's lock taken."""
    report_errors_in_one_line(stage)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sections = params.load_all(params_file)
    use_threads(sections["base"].num_threads)
    quiet_progress_bars(interactive=sys.stderr.isatty())
    # Under accelerate/torchrun every rank runs the script; rank 0 writes the outputs.
    if int(os.environ.get("RANK", "0")) == 0:
        lock_stage(stage, lock_dir)


def use_threads(count: int) -> None:
    """Run every CPU kernel on ``count`` threads: through the environment for libraries not yet
    loaded (OpenMP reads it once), and through torch itself if it already is."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)


def quiet_progress_bars(interactive: bool) -> None:
    """See point 4 of the module docstring; both libraries read these when they load."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' load / save bars
    if not interactive:
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def lock_stage(stage: str, lock_dir: str | Path = LOCK_DIR) -> Path:
    """Take ``<lock_dir>/<stage>.lock`` for this process's lifetime; :class:`StageBusy` if held."""
    path = Path(lock_dir) / f"{stage}.lock"
    if stage in _held:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StageBusy(
            f"{path} is held by process {holder}, which is still writing the outputs of stage "
            f"{stage}; wait for it to end (or stop it) and run again"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _held[stage] = fd
    return path


def one_line(err: BaseException) -> str | None:
    """The one-line report of an error a user can act on, or None for a bug (keep the trace)."""
    if isinstance(err, PipelineError):
        message = str(err)
    elif isinstance(err, OSError) and err.filename is not None:
        message = f"{err.strerror or type(err).__name__}: {err.filename}"
    else:
        return None
    return " ".join(message.split())


def report_errors_in_one_line(stage: str) -> None:
    """Install a ``sys.excepthook`` that prints :func:`one_line` errors as ``<stage>: ...``."""
    fallback = sys.__excepthook__

    def hook(kind: type[BaseException], err: BaseException, trace: TracebackType | None) -> None:
        line = one_line(err)
        if line is None:
            fallback(kind, err, trace)
        else:
            sys.stderr.write(f"{stage}: error: {line}\n")

    sys.excepthook = hook
