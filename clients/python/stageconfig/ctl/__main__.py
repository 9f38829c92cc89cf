"""``python -m stageconfig.ctl``: the same as the ``stageconfigctl`` console script."""

import sys

from stageconfig.ctl import main

sys.exit(main())
