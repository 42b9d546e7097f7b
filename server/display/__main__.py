"""python -m server.display probe: which screen backends work on this machine."""

import sys

from server.display.controller import main

sys.exit(main())
