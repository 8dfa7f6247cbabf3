"""`python -m recovery_coach`: the `recovery-coach` command, for an install without its script."""

import sys

from recovery_coach.cli import main

sys.exit(main())
