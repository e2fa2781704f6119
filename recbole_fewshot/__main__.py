"""``python -m recbole_fewshot`` is the ``recbole-fewshot`` command."""

import sys

from recbole_fewshot.cli import main

sys.exit(main())
