"""The errors the command line tells apart, each with its own exit code.

The command line reports any :class:`InputError` as one line with exit code 2; library
callers can catch it to tell bad input from a failure of the code or its environment.
A :class:`WaitTimeout` (another party, e.g. the edge service, did not answer in time) is one
line with exit code :data:`EXIT_TIMEOUT`.
"""

EXIT_INPUT = 2
EXIT_TIMEOUT = 4


class InputError(ValueError):
    """Bad input from the user (a file, a name, an option or a parameter); the message says which."""


class WaitTimeout(RuntimeError):
    """Waiting for another party ran past its limit; the message says for what and how long."""
