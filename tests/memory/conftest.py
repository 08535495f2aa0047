from __future__ import annotations

import os

# Models come from installed packages only; never from a hub (tests may set environment, the library never reads it).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
