"""The package version, in core so every layer can name it."""

__version__ = "0.1.0"
