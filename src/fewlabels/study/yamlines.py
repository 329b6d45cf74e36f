"""YAML that remembers where each key was written and refuses duplicate keys.

``load_yaml_lines(path)`` returns plain-looking dicts and lists (``LineDict``,
``LineList``) that also carry the 1-based line of every key and item, so a study's
errors can say ``study.yaml line 12: unknown key 'lables'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fewlabels.core.errors import ConfigError

MAX_NODES = 100_000  # a document whose aliases expand beyond this is refused ("billion laughs")


class LineDict(dict):
    """A dict with ``line`` (where the mapping starts) and ``lines[key]``."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list):
    """A list with ``line`` (where the sequence starts) and ``lines[i]``."""

    line: int = 0
    lines: list[int]


def _loader(source: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
        loader.flatten_mapping(node)
        out = LineDict()
        out.line, out.lines = node.start_mark.line + 1, {}
        for k_node, v_node in node.value:
            key = loader.construct_object(k_node, deep=True)
            line = k_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise ConfigError(f"{source} line {line}: a key must be a plain value") from None
            if key in out:
                raise ConfigError(
                    f"{source} line {line}: duplicate key {key!r} "
                    f"(first given on line {out.lines[key]})"
                )
            out[key] = loader.construct_object(v_node, deep=True)
            out.lines[key] = line
        return out

    def sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LineList:
        out = LineList(loader.construct_object(n, deep=True) for n in node.value)
        out.line = node.start_mark.line + 1
        out.lines = [n.start_mark.line + 1 for n in node.value]
        return out

    def construct_document(self: yaml.SafeLoader, node: yaml.Node) -> Any:
        _check_size(node, source)
        return yaml.SafeLoader.construct_document(self, node)

    Loader.construct_document = construct_document  # type: ignore[method-assign]
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse a node graph that is recursive or whose aliases expand beyond ``MAX_NODES``."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: deep nesting must not hit the recursion limit
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        kids = _children(node)
        if children_done:
            active.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in kids), MAX_NODES + 1)
            continue
        if key in active:
            raise ConfigError(
                f"{source} line {node.start_mark.line + 1}: an alias refers to itself"
            )
        active.add(key)
        stack.append((node, True))
        for c in kids:
            if id(c) in active:
                raise ConfigError(
                    f"{source} line {c.start_mark.line + 1}: an alias refers to itself"
                )
            if id(c) not in sizes:
                stack.append((c, False))
    if sizes[id(root)] > MAX_NODES:
        raise ConfigError(
            f"{source}: its aliases expand to more than {MAX_NODES:,} values; write it out"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    return []


def decode_text(data: bytes | str, source: str) -> str:
    """UTF-8 text of a file's bytes; anything else is a one-line ``ConfigError``."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text (bad byte at offset {e.start})") from None


def load_yaml_lines(text: str | bytes, source: str) -> Any:
    """Parse YAML ``text`` (named ``source`` in errors) keeping line numbers."""
    text = decode_text(text, source)
    try:
        return yaml.load(text, Loader=_loader(source))
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a study file") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {str(e).splitlines()[0]}") from None


def line_of(obj: Any, loc: Sequence[Any]) -> int:
    """The line of the deepest element of ``loc`` (keys and indices) found in ``obj``."""
    line = getattr(obj, "line", 1) or 1
    for part in loc:
        in_dict = isinstance(obj, LineDict) and part in obj
        in_list = isinstance(obj, LineList) and isinstance(part, int) and 0 <= part < len(obj)
        if in_dict or in_list:
            line, obj = obj.lines[part], obj[part]
        else:
            break
    return line


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file with line numbers; a missing file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file {p} does not exist")
    return load_yaml_lines(p.read_bytes(), str(p))
