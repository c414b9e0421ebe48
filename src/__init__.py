"""hypertune: tune a configurable CNN with Ray Tune. See hypertune.py and README.md."""

import os

# Read by Ray when it starts, here and in every worker that imports this package.
# Without it Ray >= 2.5x writes an auth token under ~/.ray on its first start.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Short trials checkpoint every few seconds by design; Tune would warn about it on every epoch.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
