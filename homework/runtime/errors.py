"""The project's own error types: every user-facing failure is one of these."""


class HomeworkError(Exception):
    """Base class: the CLI prints these as one message and exits non-zero, without a traceback."""


class DataError(HomeworkError, ValueError):
    """A data file or a row in it is unusable; the message names the file, the row and the fix."""


class ModelResolutionError(HomeworkError):
    """The model could not be found, built or loaded; the message says what to run or set."""


class CacheError(ModelResolutionError):
    """The model cache is unreadable, unwritable or corrupt."""


class TrainingHealthError(HomeworkError, RuntimeError):
    """Training stopped because it was going nowhere (NaN, zero loss, nothing supervised, ...)."""

    def __init__(self, message: str, *, catalog_row: int | None = None, step: int | None = None):
        super().__init__(message)
        self.catalog_row = catalog_row
        self.step = step


class PreflightError(TrainingHealthError):
    """The pre-flight scan refused to start training."""
