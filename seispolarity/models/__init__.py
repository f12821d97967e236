"""The model zoo: one module per published polarity model, all registered by name."""
from .base import MODEL_REGISTRY, PolarityModel, get_model, list_models, model_from_description, register_model
from .cfm import CFM
from .diting_motion import DiTingMotion
from .ensemble import Ensemble
from .eqpolarity import EQPolarity
from .polarcap import PolarCAP
from .ppnet import PPNet
from .ross import Ross
from .rpnet import RPNet

__all__ = [
    "MODEL_REGISTRY", "PolarityModel", "get_model", "list_models", "model_from_description", "register_model",
    "Ross", "PPNet", "EQPolarity", "DiTingMotion", "CFM", "RPNet", "PolarCAP", "Ensemble",
]
