"""TASC Studio: make a language model answer one task faster using a corpus of the task's outputs."""

__version__ = "0.1.0"
