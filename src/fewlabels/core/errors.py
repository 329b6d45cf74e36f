"""User-facing errors: each becomes one line on stderr and exit code 2 at the CLI."""

from __future__ import annotations


class FewlabelsError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""

    exit_code = 2

    def __str__(self) -> str:  # keep it to one line whatever the message
        return " ".join(super().__str__().split())


class DataError(FewlabelsError):
    """Unreadable, corrupt or inconsistent data, or an unknown data spec."""


class SplitError(FewlabelsError):
    """A split that cannot be made (too many labels per class, an empty class, ...)."""


class ConfigError(FewlabelsError):
    """An unknown name or an invalid option value."""


class CheckpointError(FewlabelsError):
    """A checkpoint that is missing, corrupt, unsafe, or from another architecture."""


class DivergenceError(FewlabelsError):
    """Training produced a NaN or infinite loss."""


class WriteError(FewlabelsError, OSError):
    """A file that could not be written (disk full, no permission); the old one is kept."""
