"""``python -m imagescan.emulator``: run the emulator from a shell for demos and manual testing."""

import sys

from imagescan.emulator import server

sys.exit(server.main())
