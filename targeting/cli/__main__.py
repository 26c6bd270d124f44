"""``python -m targeting.cli``: the same as the ``targeting`` command."""

import sys

from . import main

sys.exit(main())
