"""`python -m shared.sim ...` runs the simulator in the foreground (same flags as `kisgw sim`)."""

import sys

from shared.sim.cli import run

sys.exit(run(sys.argv[1:]))
