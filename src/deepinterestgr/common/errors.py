"""The one base class of every error a user can act on from its message alone.

Bad params, a malformed record, a missing API key, a backend that failed too often: each
raises a subclass of :class:`PipelineError` (usually also a ``ValueError`` or
``RuntimeError``) whose message names the file, record and field, or the params key, and
says what was expected. A stage reports such an error as one line and exits non-zero
(:mod:`deepinterestgr.common.stage_guard`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Bad input or a failed run, explained completely by its one-line message."""
