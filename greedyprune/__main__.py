"""``python -m greedyprune``: the same as the ``greedyprune`` command (and what ``torchrun -m``
launches)."""

import sys

from greedyprune.cli import main

sys.exit(main())
