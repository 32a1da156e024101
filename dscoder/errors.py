"""Errors a user can act on.

`UserError` is the base of every error raised because of what a user asked for (a model
that cannot be loaded, a bad setting, a prompt too long, a file without a cursor...): its
message names what is wrong and how to fix it. The command line reports a `UserError` (and an
`OSError`: a missing file, a full disk) as one line, `error: ...`, with exit code 2; any other
exception is a bug and keeps its traceback.

A `ValueError` subclass, so that library callers that caught `ValueError` keep working.

Every failure to load or interpret a checkpoint raises `CheckpointError` with a message
naming the file, tensor key, shape or setting at fault, so that nothing half-loaded is
ever returned and the user knows what to fix.
"""


class UserError(ValueError):
    """Something the user asked for cannot be done as asked; the message says what to change."""


class CheckpointError(UserError):
    """A checkpoint (HF directory, safetensors, GGUF or config) cannot be used as asked."""


class ConfigError(UserError):
    """A model configuration (or a setting) is inconsistent or names something unsupported."""
