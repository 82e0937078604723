"""Errors a user can act on. The CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """Bad input (config, argument, file): the message says what and where."""


class IntegrityError(UserError):
    """A file failed verification (hash, size, manifest, config): it was not loaded."""
