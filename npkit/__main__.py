"""``python -m npkit ...``: the same as the ``npkit`` command."""

import sys

from npkit.cli import main

sys.exit(main())
