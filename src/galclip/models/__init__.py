"""Models: image and spectrum encoders, their registry of named presets and checkpoints."""
from galclip.models.checkpoint import load_encoder, save_encoder
from galclip.models.registry import build_encoder, create_encoder, encoder_config, list_encoders

__all__ = ["build_encoder", "create_encoder", "encoder_config", "list_encoders", "load_encoder",
           "save_encoder"]
