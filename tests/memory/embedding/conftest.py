from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export cache, shared by this folder's modules: the model is exported once per session."""
    return tmp_path_factory.mktemp("onnx-cache")
