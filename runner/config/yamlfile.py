"""YAML reading with line numbers, safe and bounded: one parse of each file gives its data and the line
of every key and value.

The text is parsed once (libyaml's parser when PyYAML has it, else PyYAML's own), composed into nodes
by PyYAML's composer and built into plain data by its safe constructor. What a hostile or careless
file could do to that is refused as a problem naming the file and line, before it costs time or
memory: aliases (`*name`, the "billion laughs" bomb: a few hundred bytes that expand to gigabytes;
repeat the value instead), nesting deeper than MAX_DEPTH, more than MAX_NODES values, files larger
than MAX_BYTES, bytes that are not UTF-8, and keys given twice in one mapping (YAML would keep the
last one silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from runner.config.exact import keep_written_numbers
from runner.errors import ConfigError, Problem

KeyPath = tuple[Any, ...]

MAX_BYTES = 16 * 1024 * 1024  # long SQL belongs in sql_file, which has no such limit
MAX_DEPTH = 64  # a job file needs about six levels
MAX_NODES = 200_000  # some 5,000 tasks; each value costs a few hundred bytes as a node

try:
    from yaml._yaml import CParser  # libyaml: some 50 times faster than the pure-Python scanner

    _Parser: Any = CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _ParserBase
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    CParser = None

    class _Parser(Reader, Scanner, _ParserBase):  # type: ignore[no-redef]
        def __init__(self, stream: str):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _ParserBase.__init__(self)

SMALL = 256 * 1024  # below this, libyaml composes too (a few thousand values at most); above, the composer counts


class _Refused(Exception):
    """A shape of YAML the runner does not read; `line` is where it is."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.message, self.line = message, line


class _Constructor(SafeConstructor):
    """PyYAML's safe constructor; keys given twice in a mapping are collected in `duplicates`."""

    def __init__(self) -> None:
        SafeConstructor.__init__(self)
        self.duplicates: dict[int, tuple[Any, int]] = {}  # id of a repeated key's node: (key, first line)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=False)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    self.duplicates[id(key_node)] = (key, seen[key])
                else:
                    seen[key] = line
            except TypeError:  # an unhashable key: the constructor says so below
                continue
        return super().construct_mapping(node, deep)


keep_written_numbers(_Constructor)  # a number with a decimal point keeps its text (exact.py)


class _Loader(Composer, _Constructor, Resolver, _Parser):
    """The safe loader with the limits above, checked while composing: it stops at the first alias,
    the first level too deep, the first value too many."""

    def __init__(self, text: str):
        _Parser.__init__(self, text)
        Composer.__init__(self)
        _Constructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"aliases are not supported (*{event.anchor}): repeat the value instead",
                           event.start_mark.line + 1)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES:,} values: split the file", self.peek_event().start_mark.line + 1)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep: flatten the structure",
                           self.peek_event().start_mark.line + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


if CParser is not None:
    class _SmallLoader(CParser, _Constructor, Resolver):  # type: ignore[misc, valid-type]
        """libyaml composes a small file (it stops past 1,000 levels itself); an alias or a level too
        deep found afterwards sends the file to _Loader, which names it."""

        def __init__(self, text: str):
            CParser.__init__(self, text)
            _Constructor.__init__(self)
            Resolver.__init__(self)


class _Careful(Exception):
    """A small file holds an alias or nests too deeply: read it again with _Loader, which says where."""


@dataclass
class YamlDoc:
    """A parsed YAML file: its data, and the line of every key and the first content line of every scalar."""

    file: str
    data: Any
    key_lines: dict[KeyPath, int] = field(default_factory=dict)
    value_lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.key_lines:
                return self.key_lines[path]
            path = path[:-1]
        return None


def read_text(path: Path, display: str, limit: int | None = MAX_BYTES, what: str = "file") -> str:
    """A text file as UTF-8 (a BOM dropped). Unreadable, too large or not UTF-8: a ConfigError saying
    where and what to do."""
    try:
        if not path.is_file():
            raise ConfigError(Problem(display, "", f"not a regular {what}: replace it with a file"))
        with path.open("rb") as f:
            data = f.read(limit + 1) if limit is not None else f.read()
    except OSError as exc:
        raise ConfigError(Problem(display, "", f"cannot read {what}: {exc.strerror}")) from None
    if limit is not None and len(data) > limit:
        raise ConfigError(Problem(display, "", f"{what} is larger than {limit // (1024 * 1024)} MB: "
                                               "move long SQL into an sql_file, or split the file"))
    return decode_utf8(data, display)


def decode_utf8(data: bytes, display: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(Problem(display, "", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} "
                                               "cannot be read; save the file as UTF-8", line)) from None


def read_yaml(path: Path, display: str) -> YamlDoc:
    """Read one YAML file safely. Every way it cannot be read becomes a ConfigError naming file and line."""
    return parse_yaml(read_text(path, display), display)


def parse_yaml(text: str, display: str) -> YamlDoc:
    if CParser is not None and len(text) <= SMALL:
        try:
            return _parse(_SmallLoader(text), text, display, check=True)
        except _Careful:
            pass
    return _parse(_Loader(text), text, display, check=False)


def _parse(loader: Any, text: str, display: str, check: bool) -> YamlDoc:
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise ConfigError(Problem(display, "", exc.message, exc.line)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other control codes)
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(Problem(display, "", f"character #x{code:04x} is not allowed in YAML: "
                                               "remove it", line)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_syntax_problem(exc, display)) from None
    finally:
        loader.dispose()
    doc = YamlDoc(display, data)
    if node is not None:
        repeated = _index(node, (), doc, loader.duplicates, check)
        if repeated:
            raise ConfigError([Problem(display, ".".join(map(str, path)),
                                       f"key {key!r} is given twice (first at line {first}): keep one (YAML "
                                       "would silently use the last)", line)
                               for path, key, first, line in repeated])
    return doc


def _syntax_problem(exc: yaml.YAMLError, display: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start.line + 1 != line:  # where the unclosed thing began
        problem += f" ({context} that starts at line {start.line + 1})"
    return Problem(display, "", f"YAML syntax error: {problem}; fix the YAML", line)


def _index(root: yaml.Node, path: KeyPath, doc: YamlDoc, duplicates: dict[int, tuple[Any, int]],
           check: bool = False) -> list[tuple[KeyPath, Any, int, int]]:
    """Fill in the lines of `doc`; returns (path, key, first line, line) of each key node in `duplicates`.
    With `check`, a node met twice (an alias) or a path deeper than MAX_DEPTH raises _Careful."""
    repeated = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, path)]  # no recursion: nothing to bound
    while stack:
        node, path = stack.pop()
        if check:
            if id(node) in seen or len(path) >= MAX_DEPTH:
                raise _Careful()
            seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = path + (key_node.value,)
                if id(key_node) in duplicates:
                    key, first = duplicates[id(key_node)]
                    repeated.append((key_path, key, first, key_node.start_mark.line + 1))
                    continue
                doc.key_lines[key_path] = key_node.start_mark.line + 1
                stack.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                doc.key_lines[path + (i,)] = item.start_mark.line + 1
                stack.append((item, path + (i,)))
        elif isinstance(node, yaml.ScalarNode):
            # A block scalar (| or >) starts on the line after its indicator.
            offset = 2 if node.style in ("|", ">") else 1
            doc.value_lines[path] = node.start_mark.line + offset
    return sorted(repeated, key=lambda r: r[3])
