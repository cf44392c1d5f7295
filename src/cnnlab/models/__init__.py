"""Model families, all registered in one registry: ``create_model(name, **kwargs)``, ``list_models()``.

Every model follows one contract: ``forward_features(x)`` then ``forward_head(features)``, with
``num_classes`` and ``in_channels`` attributes. Adding a family means adding a module below and one
import line here.
"""

# Model family modules are imported here so that their builders register themselves.
# (The imports are added as the families land.)
from cnnlab.models import (
    audio,  # noqa: F401
    cifar_fast,  # noqa: F401
    compress,  # noqa: F401
    dct,  # noqa: F401
    encoder_decoder,  # noqa: F401
    inception,  # noqa: F401
    mini_xception,  # noqa: F401
    resnet,  # noqa: F401
    superres,  # noqa: F401
    xception,  # noqa: F401
)
from cnnlab.models._registry import create_model, list_models, model_tags, register_model

__all__ = ["create_model", "list_models", "model_tags", "register_model"]
