"""User-facing errors: one line that names the input and says what to do."""


class InputError(ValueError):
    """Bad input from the user (command-line option, form parameter or file).

    The command line prints the message alone and exits with status 2; the protocol shows it as
    a validation error. The message must name the option or file and say how to fix it.
    """
