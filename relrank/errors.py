"""The exception types that the command-line tools print as a one-line error."""


class UserError(Exception):
    """A problem with the user's input (flags, files, workdir) rather than a bug."""


class Interrupted(UserError):
    """Ctrl-C or SIGTERM stopped the work; the message says where it can be picked up (exit status 130)."""
