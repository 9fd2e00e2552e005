"""Models by name: the book's LeNet and its variants, and the Modern-CNN chapter's networks."""

from cnnlab.models import lenet as _lenet  # noqa: F401  (registers the LeNet family)
from cnnlab.models import modern as _modern  # noqa: F401  (AlexNet, VGG, ..., DenseNet)
from cnnlab.models.common import init_weights, pool_before_activation
from cnnlab.models.registry import (
    create_model,
    list_models,
    model_options,
    parse_options,
    register_model,
)
from cnnlab.models.summary import format_summary, summarize

__all__ = [
    "create_model",
    "format_summary",
    "init_weights",
    "list_models",
    "model_options",
    "parse_options",
    "pool_before_activation",
    "register_model",
    "summarize",
]
