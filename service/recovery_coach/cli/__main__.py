"""`python -m recovery_coach.cli`: the `recovery-coach` command (the tests run it so)."""

import sys

from recovery_coach.cli import main

sys.exit(main())
