"""``python -m raykube``: the ``raykube`` command, for environments without its script on PATH."""

import sys

from raykube.cli import main

sys.exit(main())
