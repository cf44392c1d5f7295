"""Data: specs -> in-memory uint8 tensors (``load_data``), image files -> tensors (``load_images``),
batched paired augmentation (``cnnlab.data.transforms``) and verified downloads (``cnnlab.data.download``).

The contract other packages rely on is in docs/internals.md; the user-facing spec grammar in the README.
"""

from cnnlab.data.bundle import DataBundle, ImageData
from cnnlab.data.images import DataWarning, load_images
from cnnlab.data.specs import load_data, parse_spec

__all__ = ["DataBundle", "DataWarning", "ImageData", "load_data", "load_images", "parse_spec"]
