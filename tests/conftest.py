"""Suite-wide settings: nothing a test writes lands outside its temporary folders."""

import os
import tempfile

# The trainer caches reference log-probs under $PREFKIT_CACHE (default ~/.cache/prefkit); keep the
# suite's out of the home folder. Subprocesses inherit it.
os.environ.setdefault("PREFKIT_CACHE", tempfile.mkdtemp(prefix="prefkit-test-cache-"))
