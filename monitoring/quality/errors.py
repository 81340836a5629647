class QualityError(RuntimeError):
    """The quality job cannot run (no log, no prediction of the task in the window, unknown task, ...): one line, exit 2."""
