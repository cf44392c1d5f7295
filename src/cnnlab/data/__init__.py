"""Data: specs -> in-memory uint8 tensors (``load_data``), image files -> tensors (``load_images``),
batched paired augmentation (``cnnlab.data.transforms``) and verified downloads (``download``).

The contract other packages rely on is in docs/internals.md; the user-facing spec grammar in the README.
"""

from cnnlab.data.bundle import DataBundle, ImageData
from cnnlab.data.specs import load_data, parse_spec

__all__ = ["DataBundle", "ImageData", "load_data", "load_images", "parse_spec"]


def __getattr__(name: str):  # load_images pulls in Pillow; import it only when asked for
    if name == "load_images":
        from cnnlab.data.images import load_images

        return load_images
    raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")
