"""``python -m runners.families``: see :func:`runners.families.main`."""

import sys

from runners.families import main

sys.exit(main())
