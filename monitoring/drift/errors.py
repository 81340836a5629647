"""The drift job's one error type."""


class DriftError(Exception):
    """The job cannot run; the message is shown to the user as one line."""
