"""The one exception type users see from rprim: a bad argument, named with its fix."""


class RprimError(ValueError):
    """Bad input from the user. The message is one line that names the problem and the fix.

    The CLI prints it as ``rprim: error: <message>`` and exits with status 2, no traceback.
    Every package raises this type (data, evaluator, trainer), so callers catch one thing.
    """
