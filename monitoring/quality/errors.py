class QualityError(RuntimeError):
    """The quality job cannot run (no feedback, no overlap, unknown task, ...): one line, exit 2."""
