"""``python -m segcam`` runs the command line."""

import sys

from segcam.cli import main

sys.exit(main())
