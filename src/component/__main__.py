"""``python -m component``: see :mod:`component.cli`."""

from component.cli import entry

entry()
