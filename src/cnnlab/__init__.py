"""cnnlab: modern convolutional networks, from one exact convolution to trained and explained models.

Submodules are imported on demand (``cnnlab.ops``, ``cnnlab.models``, ...) so that importing the
package, and running ``cnnlab --help``, does not pay for torch.
"""

__version__ = "0.1.0"
