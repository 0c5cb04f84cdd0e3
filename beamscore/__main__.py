"""``python -m beamscore`` runs the CLI."""

import sys

from beamscore.cli import main

sys.exit(main())
