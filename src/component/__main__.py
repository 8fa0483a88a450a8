"""``python -m component``: see :mod:`component.cli`."""

import sys

from component.cli import main

sys.exit(main())
