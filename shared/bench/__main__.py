import sys

from shared.bench import run

sys.exit(run(sys.argv[1:]))
