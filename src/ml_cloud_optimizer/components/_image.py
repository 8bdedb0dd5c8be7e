"""The images the components run in: one setting the components own, read when this module is imported.

A component names its image at definition time (``base_image``), so a registry mirror or a
release tag reaches the compiled YAML through the environment of ``mlco compile``:
``MLCO_IMAGE=registry.local/mlco:0.2.0 MLCO_CUDA_IMAGE=... mlco compile``. Kept apart from the
pipelines' settings so that components import nothing from ``pipelines`` (as Google Cloud
Pipeline Components keep theirs in ``_image.py``).
"""

from __future__ import annotations

import os

from ml_cloud_optimizer import __version__

__all__ = ["CUDA_IMAGE", "DEFAULT_CUDA_IMAGE", "DEFAULT_IMAGE", "IMAGE"]

DEFAULT_IMAGE = f"ghcr.io/mlco/ml-cloud-optimizer:{__version__}"
DEFAULT_CUDA_IMAGE = f"ghcr.io/mlco/ml-cloud-optimizer-cuda:{__version__}"

IMAGE: str = os.environ.get("MLCO_IMAGE") or DEFAULT_IMAGE
CUDA_IMAGE: str = os.environ.get("MLCO_CUDA_IMAGE") or DEFAULT_CUDA_IMAGE
