"""Failures a user can cause, each with its own exit code.

The CLI turns a :class:`ComponentError` into one line on stderr and exits with the
class's ``exit_code``; anything else is a bug and exits 1 with a traceback. The codes are
listed in the README, so keep them stable: scheduled runs and workflow engines branch on
them.
"""

from __future__ import annotations

from typing import Any


class ComponentError(Exception):
    """Base class: ``str(error)`` is the one-line message shown to the user.

    ``summary`` carries a failed run's JSON summary, so the CLI prints what was processed,
    skipped and failed, not only the first failure.
    """

    exit_code = 1
    summary: dict[str, object] | None = None

    def __init_subclass__(cls, *, exit_code: int, **kwargs: Any) -> None:
        """A subclass states its code in its header: ``class X(ComponentError, exit_code=3)``."""
        super().__init_subclass__(**kwargs)
        cls.exit_code = exit_code


class InvalidParameterError(ComponentError, exit_code=2):
    """A command-line or DeltaTwin input value is malformed (bbox, datetime, resolution...)."""


class NoItemsFoundError(ComponentError, exit_code=3):
    """The search matched no L1C item."""


class InvalidItemError(ComponentError, exit_code=4):
    """An input item is not usable: malformed JSON, not L1C, a required band missing."""


class AssetReadError(ComponentError, exit_code=5):
    """A band asset is missing, unreadable or corrupt."""


class StacApiError(ComponentError, exit_code=6):
    """The STAC API cannot be reached or keeps failing."""


class CredentialsError(ComponentError, exit_code=7):
    """An ``s3://`` asset needs CDSE S3 keys and none were given."""


class ModelError(ComponentError, exit_code=8):
    """The weights or the model card are missing, tampered with or incompatible."""


class OutputError(ComponentError, exit_code=9):
    """The output folder cannot be written, or another run holds it.

    Cannot be written: no space left (or a quota, or a file too large for its file system), a
    read-only or vanished mount, no permission, or ``--output`` naming a file
    (:mod:`component.io.output_faults`). Such a fault stops the whole run: it would fail every
    item alike.
    """


class PartialFailureError(ComponentError, exit_code=10):
    """Some items of a multi-item run failed while others succeeded (see the run summary)."""
