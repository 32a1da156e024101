"""Errors a user can act on.

Every failure to load or interpret a checkpoint raises `CheckpointError` with a message
naming the file, tensor key, shape or setting at fault, so that nothing half-loaded is
ever returned and the user knows what to fix.
"""


class CheckpointError(ValueError):
    """A checkpoint (HF directory, safetensors, GGUF or config) cannot be used as asked."""


class ConfigError(ValueError):
    """A model configuration is inconsistent or names something unsupported."""
