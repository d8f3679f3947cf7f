"""``python -m tensorone`` is ``t1``."""

from tensorone.cli import main

raise SystemExit(main())
