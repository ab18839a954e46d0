"""The one base class of every error caused by the user's input.

The command line reports any :class:`InputError` as one line with exit code 2; library
callers can catch it to tell bad input from a failure of the code or its environment.
"""


class InputError(ValueError):
    """Bad input from the user (a file, a name, an option or a parameter); the message says which."""
