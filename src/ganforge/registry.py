"""The one registration mechanism: a name -> entry table that plug-ins and tests extend.

Losses (:data:`ganforge.losses.LOSSES`), tasks (:data:`ganforge.tasks.TASKS`), model
families (:mod:`ganforge.models.families`) and metrics (:mod:`ganforge.metrics.catalog`)
each keep one :class:`Registry`. Built-in entries are registered by their own modules,
which their package imports explicitly (no import by name at run time), so a registry
is complete once its package is imported. Config choices, ``--help`` listings and
README tables are read from these tables, never written out a second time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from ganforge.errors import ConfigError, quote

T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    """Entries by name, in registration order; read like a dict.

    Args:
        kind: what an entry is, for messages ("loss", "task", ...).
        key: the config key or option that names an entry (for :meth:`get`'s ConfigError).
        lower: names must be lower case (for registries looked up case-insensitively).
    """

    def __init__(self, kind: str, key: str, lower: bool = False):
        self.kind, self.key, self.lower = kind, key, lower
        self._entries: dict[str, T] = {}

    def check_name(self, name: str) -> str:
        """``name`` if it can be registered; a bad or taken name is a ValueError (a programming error).

        Decorators call this when they are created, so a bad name fails at once.
        """
        bad = not isinstance(name, str) or not name or any(c.isspace() or c in ",=" for c in name)
        if bad or (self.lower and name != name.lower()):
            case = "lower case, " if self.lower else ""
            raise ValueError(f"{self.kind} name must be {case}non-empty, without spaces, commas or '=': {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        return name

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name`` (checked by :meth:`check_name`); returns ``entry``."""
        self._entries[self.check_name(name)] = entry
        return entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` (plug-ins and tests); an unknown name is ignored."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def get_or_error(self, name: str) -> T:
        """The entry registered as ``name``; a ConfigError naming :attr:`key` and the choices otherwise."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ConfigError(self.key, f"must be one of {', '.join(self._entries)}, got {quote(name)}")
        return entry

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
