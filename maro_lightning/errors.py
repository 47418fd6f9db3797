"""The error a run raises for bad input it can only detect once it starts (a locked or mismatching data folder,
a tokenizer that cannot write a game's actions): ``maro`` prints it as one line and exits with status 2."""


class ConfigError(ValueError):
    """The config (or the data or checkpoint it names) cannot run as given; the message says which key and why."""
