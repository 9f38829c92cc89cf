"""``python -m stageconfig.agent``: the same as the ``stageconfig-agent`` command."""

from __future__ import annotations

import sys

from stageconfig.agent import main

if __name__ == "__main__":
    sys.exit(main())
