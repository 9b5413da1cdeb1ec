"""User-facing errors: one line that names the input and says what to do."""


class InputError(ValueError):
    """Bad input from the user (command-line option, form parameter or file).

    The command line prints the message alone and exits with status 2; the protocol shows it as
    a validation error. The message must name the option or file and say how to fix it.
    """


class UnusableMicrograph(InputError):
    """A micrograph with nothing to screen: every pixel NaN or Inf, or all finite pixels equal
    (blank or constant). The message names the file; a caller screening many micrographs may
    skip this one with a warning instead of stopping."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class TrainingDiverged(InputError):
    """The training loss became NaN or Inf: the network's weights are lost, and so is every
    score they would give. The message names the network and the epoch, and suggests a lower
    learning rate."""
