"""``python -m clawbot_connector run|status|send``: the same as the
``clawbot-connector`` command, for when only the interpreter is on PATH."""

import sys

from .cli import main

sys.exit(main())
