"""`python -m exitlab`: the same CLI as the `exitlab` console script (exitlab/cli.py)."""

import sys

from exitlab.cli import main

sys.exit(main())
