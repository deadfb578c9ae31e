"""Errors the engine raises on bad input; every message names what is wrong."""


class PTMoEError(Exception):
    """Base class: a user-facing problem (bad config, bad data, bad checkpoint)."""


class ConfigError(PTMoEError):
    """An impossible or inconsistent hyperparameter; ``field`` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class DataError(PTMoEError):
    """A data file or spec that cannot be read as examples."""


class ModelLoadError(PTMoEError):
    """A base model that cannot be loaded (missing, offline, unsupported)."""


class AdapterError(PTMoEError):
    """An adapter directory that is corrupt or does not match the base model."""


class BundleError(PTMoEError):
    """A run bundle that is refused: corrupt, of another format version, with unexpected or oversized
    members, pickled tensors, or for a base model this installation does not have."""
