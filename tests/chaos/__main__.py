"""``python -m tests.chaos``: the chaos checker (what ``scripts/chaos`` runs)."""

from tests.chaos.checker import main

raise SystemExit(main())
