"""The trainer's user-facing error type.

Anything the user can fix from the command line (bad preset, block size, schedule, corpus,
output folder) is raised as :class:`ZooError`; the CLI prints ``rprim: error: <message>`` and
exits with status 2. Messages are one line and name the fix.
"""


class ZooError(ValueError):
    """Bad input to the trainer; the message is one line that names the fix."""
