"""The two kinds of row of the options table (cli/options.py): a cache option, and the
command-line flags that set it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flag:
    """A command-line flag. `help` may contain `{default}`, replaced by the default of the option
    the flag sets (or by the flag's own `default`), so that `--help` cannot drift from it."""

    name: str  # "--default-ttl"
    help: str
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # argparse `type`: a validator above
    choices: tuple[str, ...] | None = None
    switch: bool = False  # takes no value; given, it sets its option to `sets`
    sets: Any = None
    repeat: bool = False  # may be given several times; the values make a list
    many: bool = False  # with repeat: each time takes one or more values (FLAG A B C)
    default: Any = None  # the parsed value when not given (None: the option's default applies)
    dest: str | None = None  # argparse attribute, when not the config key
    in_config: bool = True  # False: meaningless as a lasting setting in a config file

    @property
    def key(self) -> str:
        """The flag's key in a config file: the long option with _ for -."""
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def attribute(self) -> str:
        return self.dest or self.key


@dataclass(frozen=True)
class Option:
    """A mitmproxy option of the cache, and the flags that set it (the first given wins)."""

    name: str
    type: type
    default: Any
    help: str
    flags: tuple[Flag, ...] = ()
