"""YAML reading that keeps the line of every key, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from deltaflow.errors import Diagnostic

Path = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A parsed YAML file: its data, the line of each key path, and parse problems."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def format_path(path: Path) -> str:
    """``("steps", 0, "source")`` -> ``steps[0].source``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a Document; syntax errors become problems, never exceptions."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = f"invalid YAML: {exc.problem or exc}"
        hint = "check indentation, quoting and that every 'key: value' has a space after ':'"
        return Document(file, None, problems=[Diagnostic(problem, file=file, line=line, hint=hint)])
    doc = Document(file, None)
    if node is None:
        return doc
    doc.lines[()] = node.start_mark.line + 1
    _collect(node, (), doc)
    doc.data = yaml.load(text, Loader=_Loader)
    return doc


def _collect(node: yaml.Node, path: Path, doc: Document) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                doc.problems.append(
                    Diagnostic(
                        f"duplicate key '{key}' (first defined on line {seen[key]})",
                        path=format_path((*path, key)),
                        file=doc.file,
                        line=line,
                        hint="remove one of them: YAML would silently keep only the last",
                    )
                )
            seen[key] = line
            doc.lines.setdefault((*path, key), line)
            _collect(value_node, (*path, key), doc)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines[(*path, index)] = item.start_mark.line + 1
            _collect(item, (*path, index), doc)
