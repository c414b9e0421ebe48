"""Shared fixtures: generated images (no download, no ../shared) and a private image cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.data import write_synthetic_images


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the tests' decoded-image caches out of ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["HYPERTUNE_CACHE"] = str(cache)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    return cache


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 20 generated 40 px images."""
    return write_synthetic_images(tmp_path_factory.mktemp("images"))
