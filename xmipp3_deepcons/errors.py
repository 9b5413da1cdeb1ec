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


class FieldError(InputError):
    """A refusal about one field of a run's request (``run.request.FIELDS``), worded for no
    front end in particular: each front end names the fields its own way (``line``): the
    command line its options, the Scipion protocol its form's labels. ``str()`` is the command
    line's wording (``run.request.flags``), the engine's default.

    ``text`` follows the field's name; ``{name}`` in it stands for another field's (or a
    phrase's) name in the front end's words; ``named`` False: ``text`` is the whole line."""

    def __init__(self, field, text, named=True):
        self.field, self.text, self.named = field, text, named
        super().__init__(text)

    def line(self, names):
        """This problem in a front end's words (``names``: {field or phrase: its words}; a
        phrase's words may name fields in turn)."""
        import re

        def name(match):
            found = names.get(match.group(1), match.group(0))
            return re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), m.group(0)), found)
        text = re.sub(r"\{(\w+)\}", name, self.text)
        return f"{names[self.field]} {text}" if self.named else text

    def _key(self):
        return (self.field, self.text, self.named)

    def __eq__(self, other):      # two front ends' problems compare by what they say
        return isinstance(other, FieldError) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"FieldError({self.field!r}, {self.text!r}, named={self.named})"

    def __str__(self):
        from .run.request import flags
        return self.line(flags())

