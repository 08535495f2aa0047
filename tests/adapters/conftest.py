from __future__ import annotations

import os

# Models come from local folders only; never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
