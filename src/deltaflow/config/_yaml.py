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
        data = yaml.load(text, Loader=_Loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = f"invalid YAML: {exc.problem or exc}"
        hint = _PLAIN if isinstance(exc, yaml.constructor.ConstructorError) else _HINT
        return Document(file, None, problems=[Diagnostic(problem, file=file, line=line, hint=hint)])
    except yaml.YAMLError as exc:  # e.g. a byte that YAML does not allow
        problem = f"invalid YAML: {exc}"
        return Document(file, None, problems=[Diagnostic(problem, file=file, hint=_HINT)])
    doc = Document(file, None)
    if node is None:
        return doc
    doc.lines[()] = node.start_mark.line + 1
    _collect(node, (), doc, set())
    if not any(p.message.startswith(_RECURSIVE) for p in doc.problems):
        doc.data = data  # recursive data is dropped: nothing further could walk it
    return doc


_HINT = "check indentation, quoting and that every 'key: value' has a space after ':'"
_PLAIN = "write plain YAML: no '!!' tags, and only plain values as keys"
_RECURSIVE = "recursive alias"


def _collect(node: yaml.Node, path: Path, doc: Document, active: set[int]) -> None:
    if id(node) in active:
        doc.problems.append(
            Diagnostic(
                f"{_RECURSIVE}: this value contains itself",
                path=format_path(path),
                file=doc.file,
                line=node.start_mark.line + 1,
                hint="a pipeline file cannot be recursive; copy the value instead of the alias",
            )
        )
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
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
            _collect(value_node, (*path, key), doc, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines.setdefault((*path, index), item.start_mark.line + 1)
            _collect(item, (*path, index), doc, active)
    active.discard(id(node))


def _key(node: yaml.Node) -> Any:
    """A mapping key as the loaded data holds it: ``1:`` is the int 1, ``yes:`` is True."""
    if not isinstance(node, yaml.ScalarNode):
        return str(node.value)  # not hashable: loading the data has failed already
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError:
        return node.value
