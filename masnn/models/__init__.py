"""Stage 3: assembled networks behind a registry (``create_model``, ``list_models``).

Importing this package registers every model: ``dvs`` (``ma_snn3``, ``ma_snn3_tiny``,
``ma_snn5``) and ``ms_resnet`` (``ms_resnet18/34/104``). See ``docs/models.md``.
"""

from masnn.models import dvs, ms_resnet  # noqa: F401  (registers the models)
from masnn.models._cfg import ModelCfg
from masnn.models._factory import MODELS, create_model, list_models, model_cfg, register_model
from masnn.models._utils import count_neurons, layer_flops
from masnn.models.official import load_official, load_pretrained
from masnn.models.streaming import StreamingModel, StreamState

__all__ = [
    "MODELS",
    "ModelCfg",
    "StreamState",
    "StreamingModel",
    "count_neurons",
    "create_model",
    "layer_flops",
    "list_models",
    "load_official",
    "load_pretrained",
    "model_cfg",
    "register_model",
]
