"""YAML text → Python data like yaml.safe_load, refusing a mapping key written twice.

PyYAML keeps the last of two equal keys without a word: a second `server:` block pasted at the end of
config.yaml would silently replace the first. Here it is an error naming the key's path and both lines.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping has the same key twice. `path` is the key path (`sources.weather.api_key`), lines are 1-based."""

    def __init__(self, path: str, first_line: int, line: int) -> None:
        super().__init__(f"{path}: written twice (lines {first_line} and {line})")
        self.path = path
        self.first_line = first_line
        self.line = line


def safe_load_unique(text: str) -> Any:
    """yaml.safe_load, but a key written twice in one mapping (at any depth) raises DuplicateKeyError."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(loader, node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check(loader: yaml.SafeLoader, node: Node, path: str, seen_nodes: set[int]) -> None:
    # An alias is the same node object as its anchor: check it once (and never loop on a recursive anchor).
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check(loader, item, f"{path}[{i}]", seen_nodes)
        return
    if not isinstance(node, MappingNode):
        return
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            # `<<: *defaults`: keys written beside it override the merged ones on purpose.
            _check(loader, value_node, path, seen_nodes)
            continue
        key = loader.construct_object(key_node, deep=True)
        key_path = f"{path}.{key}" if path else str(key)
        line = key_node.start_mark.line + 1
        try:
            earlier = first_line.get(key)
        except TypeError:  # an unhashable key: the constructor refuses it with its own message
            earlier = None
        else:
            first_line[key] = earlier or line
        if earlier is not None:
            raise DuplicateKeyError(key_path, earlier, line)
        _check(loader, value_node, key_path, seen_nodes)
