"""``python -m spooled_integrations`` runs the command line."""

import sys

from spooled_integrations.cli import main

sys.exit(main())
