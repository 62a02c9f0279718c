"""Errors that mean "the user's input is wrong": the CLI and the app show their message, no traceback."""


class TascError(Exception):
    """Base class of all errors whose message is meant for the user."""


class CorpusError(TascError):
    """A corpus file is unreadable, malformed, hostile or over a limit."""


class ModelError(TascError):
    """A model could not be found or loaded."""


class Cancelled(TascError):
    """A long job was cancelled by its user."""
