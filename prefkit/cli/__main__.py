"""`python -m prefkit.cli …` (and `torchrun -m prefkit.cli train …`): the same as `prefkit …`."""

import sys

from prefkit.cli import main

sys.exit(main())
