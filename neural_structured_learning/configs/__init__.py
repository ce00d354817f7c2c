"""Configuration classes, enums and factories (plain Python data)."""

from neural_structured_learning.configs.configs import AdvNeighborConfig
from neural_structured_learning.configs.configs import AdvRegConfig
from neural_structured_learning.configs.configs import AdvTargetConfig
from neural_structured_learning.configs.configs import AdvTargetType
from neural_structured_learning.configs.configs import ContrastiveConfig
from neural_structured_learning.configs.configs import DecayConfig
from neural_structured_learning.configs.configs import DecayType
from neural_structured_learning.configs.configs import DEFAULT_ADVERSARIAL_PARAMS
from neural_structured_learning.configs.configs import DEFAULT_DISTANCE_PARAMS
from neural_structured_learning.configs.configs import DistanceConfig
from neural_structured_learning.configs.configs import DistanceType
from neural_structured_learning.configs.configs import GraphBuilderConfig
from neural_structured_learning.configs.configs import GraphNeighborConfig
from neural_structured_learning.configs.configs import GraphRegConfig
from neural_structured_learning.configs.configs import IntegrationConfig
from neural_structured_learning.configs.configs import IntegrationType
from neural_structured_learning.configs.configs import make_adv_reg_config
from neural_structured_learning.configs.configs import make_graph_reg_config
from neural_structured_learning.configs.configs import NormType
from neural_structured_learning.configs.configs import PropagationConfig
from neural_structured_learning.configs.configs import Reduction
from neural_structured_learning.configs.configs import TransformType
from neural_structured_learning.configs.configs import VirtualAdvConfig

__all__ = [
    "AdvNeighborConfig",
    "AdvRegConfig",
    "AdvTargetConfig",
    "AdvTargetType",
    "ContrastiveConfig",
    "DEFAULT_ADVERSARIAL_PARAMS",
    "DEFAULT_DISTANCE_PARAMS",
    "DecayConfig",
    "DecayType",
    "DistanceConfig",
    "DistanceType",
    "GraphBuilderConfig",
    "GraphNeighborConfig",
    "GraphRegConfig",
    "IntegrationConfig",
    "IntegrationType",
    "NormType",
    "PropagationConfig",
    "Reduction",
    "TransformType",
    "VirtualAdvConfig",
    "make_adv_reg_config",
    "make_graph_reg_config",
]
