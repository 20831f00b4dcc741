"""``python -m shmchan.cli``: the ``shmchan`` command."""

import sys

from . import main

sys.exit(main())
