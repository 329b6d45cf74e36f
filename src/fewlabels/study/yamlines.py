"""YAML that remembers where each key was written and refuses duplicate keys.

``load_yaml_lines(path)`` returns plain-looking dicts and lists (``LineDict``,
``LineList``) that also carry the 1-based line of every key and item, so a study's
errors can say ``study.yaml line 12: unknown key 'lables'``.

Scalars are read as YAML 1.2 reads them: ``1:20`` is the text ``"1:20"`` (the ratio
syntax of ``unlabeled``), not YAML 1.1's base-60 integer 80.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fewlabels.core.errors import ConfigError

MAX_NODES = 100_000  # a document whose aliases expand beyond this is refused ("billion laughs")


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.1's int and float patterns without their base-60 forms (``1:20`` -> 80)
_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
    r"|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$"
)


class _NoBase60Loader(yaml.SafeLoader):
    """SafeLoader whose ints and floats have no base-60 form: ``1:20`` stays text."""


_NoBase60Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_NoBase60Loader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
_NoBase60Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


class LineDict(dict):
    """A dict with ``line`` (where the mapping starts) and ``lines[key]``."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list):
    """A list with ``line`` (where the sequence starts) and ``lines[i]``."""

    line: int = 0
    lines: list[int]


def _loader(source: str) -> type[yaml.SafeLoader]:
    class Loader(_NoBase60Loader):
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


@dataclass(frozen=True)
class Where:
    """A place in a study file: an error about what is written there names its line."""

    source: str
    line: int

    def error(self, message: str) -> ConfigError:
        """A one-line ``ConfigError`` that starts with this file and line."""
        return ConfigError(f"{self.source} line {self.line}: {message}")


@dataclass(frozen=True)
class Located:
    """A parsed YAML document and its name: ``at(*loc)`` is where ``loc`` was written."""

    source: str
    raw: Any

    def at(self, *loc: Any) -> Where:
        """The place of the deepest element of ``loc`` (keys and indices) in the document."""
        return Where(self.source, line_of(self.raw, loc))


def pydantic_error(e: ValidationError, doc: Located, prefix: tuple = ()) -> ConfigError:
    """The first error of a pydantic validation of ``doc`` (or of the part at ``prefix``),
    as one line naming the file, the line and the key."""
    err = e.errors()[0]
    loc = (*prefix, *err.get("loc", ()))
    if err["type"] == "extra_forbidden":
        where = f" in {'.'.join(map(str, loc[:-1]))}" if len(loc) > 1 else ""
        return doc.at(*loc).error(f"unknown key {loc[-1]!r}{where}")
    if err["type"] == "missing":
        return doc.at(*loc[:-1]).error(f"missing key {loc[-1]!r}")
    what = ".".join(map(str, loc)) or "study"
    return doc.at(*loc).error(f"{what}: {err.get('msg', '')}")
