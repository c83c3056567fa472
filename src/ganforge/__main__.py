"""``python -m ganforge`` (and ``torchrun -m ganforge``): the ``ganforge`` command."""

import sys

from ganforge.cli import main

sys.exit(main())
