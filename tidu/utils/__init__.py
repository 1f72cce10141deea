"""``tidu.utils``: helpers around training — ``checkpoint`` (activation checkpointing)."""
from .checkpoint import checkpoint, checkpoint_sequential

__all__ = ["checkpoint", "checkpoint_sequential"]
