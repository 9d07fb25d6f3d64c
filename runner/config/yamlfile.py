"""YAML reading with line numbers: data from yaml.safe_load, lines from a compose pass over the same text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.config.exact import ExactLoader
from runner.errors import ConfigError, Problem

KeyPath = tuple[Any, ...]


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


def read_yaml(path: Path, display: str) -> YamlDoc:
    """Read one YAML file safely. A syntax error becomes a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(Problem(display, "", f"cannot read file: {exc.strerror}")) from None
    try:
        data = yaml.load(text, Loader=ExactLoader)  # safe_load, with floats that keep their text
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and start.line + 1 != line:  # where the unclosed thing began
            problem += f" ({context} that starts at line {start.line + 1})"
        raise ConfigError(Problem(display, "", f"YAML syntax error: {problem}; fix the YAML", line)) from None
    doc = YamlDoc(display, data)
    if node is not None:
        _index(node, (), doc)
    return doc


def _index(node: yaml.Node, path: KeyPath, doc: YamlDoc) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = path + (key_node.value,)
            doc.key_lines[key_path] = key_node.start_mark.line + 1
            _index(value_node, key_path, doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            doc.key_lines[path + (i,)] = item.start_mark.line + 1
            _index(item, path + (i,), doc)
    elif isinstance(node, yaml.ScalarNode):
        # A block scalar (| or >) starts on the line after its indicator.
        offset = 2 if node.style in ("|", ">") else 1
        doc.value_lines[path] = node.start_mark.line + offset
