"""Errors caused by user input to the model core (bad checkpoint, mismatched adapter, setting)."""


class ConvLoRAInputError(ValueError):
    """A user-supplied model input is unusable; the message names it and says what is wrong."""
