"""YAML for configs, with bounds: a small file can never expand into a huge document.

YAML anchors and aliases let a few lines describe a structure that is
exponentially larger once expanded (the "billion laughs" attack: nine levels of
nine aliases each is 9^9 = 387 million list items from under 1 KB). PyYAML
shares aliased objects rather than copying them, but anything that later walks
the value (validation, ``repr`` in an error message, a deep copy) pays the
full expansion in time and memory. :func:`load` therefore counts the nodes of
the document *as if every alias were expanded* and refuses a document above
:data:`MAX_NODES`; config files have a few hundred nodes. The text itself is
capped at :data:`MAX_BYTES`, and nesting deep enough to exhaust Python's
recursion limit is refused instead of crashing.
"""

from __future__ import annotations

from typing import Any

import yaml

from ganforge.errors import ConfigError

MAX_NODES = 10_000  # expanded YAML nodes (scalars, sequences, mappings) in one document
MAX_BYTES = 1 << 20  # 1 MiB of text


class _DocumentTooLarge(yaml.YAMLError):
    pass


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Nodes under ``node`` counting every alias as a full copy; stops early past ``limit``.

    Each distinct node is sized once (memoised by identity), so this costs
    time linear in the text even when the expansion is astronomically large.
    """
    memo: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        if depth > 200:
            raise _DocumentTooLarge("nesting deeper than 200 levels")
        total = 1
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [c for pair in n.value for c in pair]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                raise _DocumentTooLarge(f"anchors and aliases expand to more than {limit} nodes "
                                        "(config files are small; a 'billion laughs' file?)")
        memo[key] = total
        return total

    return size(node, 0)


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose alias expansion exceeds :data:`MAX_NODES`."""

    max_nodes = MAX_NODES

    def compose_document(self):  # the node graph exists here, before any Python object is built
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, self.max_nodes)
        return node


def load(text: str, where: str, max_nodes: int = MAX_NODES) -> Any:
    """Parse one YAML document safely and within bounds.

    Raises:
        ConfigError: ``where`` and why: too long, too large once aliases are
            expanded, too deeply nested.
        yaml.YAMLError: the text is not valid YAML (callers decide what that means).
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(where, f"YAML text of {len(text)} characters; config files are at most {MAX_BYTES}")
    loader = BoundedSafeLoader(text)
    loader.max_nodes = max_nodes
    try:
        return loader.get_single_data()
    except _DocumentTooLarge as exc:
        raise ConfigError(where, f"YAML refused: {exc}") from None
    except RecursionError:
        raise ConfigError(where, "YAML refused: nested too deeply") from None
    finally:
        loader.dispose()
