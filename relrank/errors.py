"""The one exception type that the command-line tools print as a one-line error."""


class UserError(Exception):
    """A problem with the user's input (flags, files, workdir) rather than a bug."""
