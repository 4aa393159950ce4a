"""Safe YAML loading that keeps the line of every node, for error messages that point at the file.

``yaml.safe_load`` returns plain dicts and loses where each value came from. Here the document is
composed with PyYAML's ``SafeLoader`` (no arbitrary objects) and walked into :class:`Node` objects
that carry their 1-based line. Mapping keys keep their source text, so ``on:`` stays the string
"on" instead of YAML 1.1's boolean True. Duplicate keys, recursive aliases and runaway alias
expansion ("billion laughs") are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from controller.protocol_model import ProtocolError

MAX_TEXT_CHARS = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 50


@dataclass(frozen=True)
class Node:
    """A YAML value with the 1-based line it starts on.

    ``value`` is a scalar (str, int, float, bool, None, or another YAML scalar type), a
    ``dict[str, Node]`` for a mapping, or a ``list[Node]`` for a sequence.
    """

    value: Any
    line: int

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing (PyYAML recurses once per level)."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._source = source

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ProtocolError(f"nesting deeper than {MAX_DEPTH} levels", self._source, line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Walker:
    """Turns composed YAML nodes into :class:`Node` trees, guarding size, depth and cycles."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.count = 0

    def fail(self, reason: str, node: yaml.Node) -> ProtocolError:
        return ProtocolError(reason, self.source, node.start_mark.line + 1)

    def convert(self, node: yaml.Node, depth: int = 0) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(f"document too large (more than {MAX_NODES} YAML nodes, "
                            "aliases expanded)", node)
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels", node)
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return Node(self._mapping(node, depth), line)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.convert(child, depth + 1) for child in node.value], line)
        return Node(self._scalar(node), line)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise self.fail(f"invalid value {node.value!r}: {exc}", node) from None

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail("a mapping key must be a plain word or string", key_node)
            key = str(key_node.value)
            if key in out:
                raise self.fail(f"duplicate key '{key}'", key_node)
            out[key] = self.convert(value_node, depth + 1)
        return out


def _syntax_error(exc: yaml.YAMLError, source: str, text: str) -> ProtocolError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    position = getattr(exc, "position", None)  # the reader's errors carry an offset instead
    if line is None and isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    reason = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return ProtocolError(reason, source, line)


def load_nodes(text: str, source: str = "<string>") -> Node:
    """Parse YAML ``text`` into a :class:`Node` tree; errors become :class:`ProtocolError`.

    Parameters
    ----------
    text : str
        The YAML document (exactly one).
    source : str
        File name used in error messages.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"expected the protocol as text, got {type(text).__name__}", source)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"protocol text longer than {MAX_TEXT_CHARS} characters", source)
    try:
        loader = _Loader(text, source)
    except yaml.YAMLError as exc:  # the reader rejects control characters up front
        raise _syntax_error(exc, source, text) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ProtocolError("the protocol file is empty", source, 1)
        return _Walker(loader, source).convert(root)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, source, text) from None
    except RecursionError:
        raise ProtocolError(f"nesting too deep (more than {MAX_DEPTH} levels)", source) from None
    finally:
        loader.dispose()
