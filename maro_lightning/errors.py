"""The errors a run raises for bad input it can only detect once it starts (a locked or mismatching data folder,
a tokenizer that cannot write a game's actions, a game whose optional extra is missing): ``maro`` prints them as one
line and exits with status 2."""


class ConfigError(ValueError):
    """The config (or the data or checkpoint it names) cannot run as given; the message says which key and why."""


class MissingExtraError(ImportError, ValueError):
    """A feature needs an optional extra that is not installed; the message names it (``maro`` prints it as one line:
    a ValueError as well as an ImportError)."""
