"""YAML reading that keeps the line of every key, so errors can point at it."""

from __future__ import annotations

import re
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
    return printable(out)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``, ``\\n``): a key or value
    quoted in a message must not move the cursor, recolour the terminal or fake a line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


#: The most a pipeline file may hold: characters, nesting of mappings and lists, aliases,
#: and the values and characters it holds once every alias is expanded. Far above any real
#: pipeline; they stop a small file from expanding into gigabytes (an "alias bomb").
MAX_CHARS = 1_000_000
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_EXPANDED_NODES = 100_000
MAX_EXPANDED_CHARS = 10_000_000

#: characters YAML does not allow in a document (control characters but tab and newlines)
_NOT_ALLOWED = re.compile(r"[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a Document; syntax errors become problems, never exceptions."""
    problem = _refused(text, file)
    if problem is not None:
        return Document(file, None, problems=[problem])
    try:
        problem = _too_deep(text, file)
        if problem is not None:
            return Document(file, None, problems=[problem])
        node = yaml.compose(text, Loader=_Loader)
        problem = _too_large(node, file) if node is not None else None
        if problem is not None:
            return Document(file, None, problems=[problem])
        data = yaml.load(text, Loader=_Loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {exc.problem or exc}"
        hint = _PLAIN if isinstance(exc, yaml.constructor.ConstructorError) else _HINT
        return Document(file, None, problems=[Diagnostic(message, file=file, line=line, hint=hint)])
    except yaml.YAMLError as exc:  # not expected once _refused has passed the text
        message = f"invalid YAML: {exc}"
        return Document(file, None, problems=[Diagnostic(message, file=file, line=1, hint=_HINT)])
    doc = Document(file, None)
    if node is None:
        return doc
    doc.lines[()] = node.start_mark.line + 1
    _collect(node, (), doc, set())
    if not any(p.message.startswith(_RECURSIVE) for p in doc.problems):
        doc.data = data  # recursive data is dropped: nothing further could walk it
    return doc


def line_at(text: str, index: int) -> int:
    """The line (from 1) of character ``index`` of ``text``."""
    return text.count("\n", 0, index) + 1


def _refused(text: str, file: str) -> Diagnostic | None:
    """A text too long to be a pipeline, or holding a character YAML does not allow."""
    if len(text) > MAX_CHARS:
        return Diagnostic(
            f"the file is longer than the limit of {MAX_CHARS:,} characters",
            file=file,
            line=line_at(text, MAX_CHARS),
            hint="a pipeline file is configuration: keep data and long SQL in their own files",
        )
    found = _NOT_ALLOWED.search(text)
    if found is None:
        return None
    return Diagnostic(
        f"invalid YAML: character U+{ord(found.group()):04X} is not allowed "
        f"(column {found.start() - text.rfind(chr(10), 0, found.start())})",
        file=file,
        line=line_at(text, found.start()),
        hint="remove it: a pipeline file is plain text, without control characters",
    )


def _too_deep(text: str, file: str) -> Diagnostic | None:
    """Mappings and lists nested deeper than MAX_DEPTH, or more than MAX_ALIASES aliases."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return _limit(file, event, f"values nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                return _limit(file, event, f"more than {MAX_ALIASES:,} aliases (*name)")
    return None


def _too_large(root: yaml.Node, file: str) -> Diagnostic | None:
    """A document whose aliases expand past MAX_EXPANDED_NODES values or
    MAX_EXPANDED_CHARS characters; each node is sized once, so this is quick."""
    sizes: dict[int, tuple[int, int]] = {}

    def size(node: yaml.Node) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = (1, 0)  # a recursive alias counts once: _collect reports it
        nodes, chars = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        children = node.value if isinstance(node, yaml.CollectionNode) else []
        for child in children:
            for item in child if isinstance(child, tuple) else (child,):
                more_nodes, more_chars = size(item)
                nodes, chars = nodes + more_nodes, chars + more_chars
        sizes[id(node)] = (nodes, chars)
        return nodes, chars

    nodes, chars = size(root)
    if nodes <= MAX_EXPANDED_NODES and chars <= MAX_EXPANDED_CHARS:
        return None
    what = (
        f"{nodes:,} values, over the limit of {MAX_EXPANDED_NODES:,}"
        if nodes > MAX_EXPANDED_NODES
        else f"{chars:,} characters, over the limit of {MAX_EXPANDED_CHARS:,}"
    )
    biggest = max((n for n in _aliased(root)), key=lambda n: sizes.get(id(n), (0, 0)), default=root)
    return _limit(file, biggest, f"the file's aliases expand to {what}")


def _aliased(root: yaml.Node) -> list[yaml.Node]:
    """The nodes that appear more than once in the document (through aliases)."""
    seen: set[int] = set()
    repeated: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            repeated[id(node)] = node
            continue
        seen.add(id(node))
        if isinstance(node, yaml.CollectionNode):
            for child in node.value:
                stack.extend(child if isinstance(child, tuple) else (child,))
    return list(repeated.values())


def _limit(file: str, at: yaml.Event | yaml.Node, what: str) -> Diagnostic:
    return Diagnostic(
        f"the file is too large to read: {what}",
        file=file,
        line=at.start_mark.line + 1 if at.start_mark else 1,
        hint="write the values out, or use fewer aliases: a pipeline file this large is "
        "most likely an error (or an attack)",
    )


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
    _check_nul(node, path, doc)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            line = key_node.start_mark.line + 1
            _check_nul(key_node, (*path, key), doc)
            if key in seen:
                doc.problems.append(
                    Diagnostic(
                        f"duplicate key '{printable(str(key))}' (first defined on line "
                        f"{seen[key]})",
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


def _check_nul(node: yaml.Node, path: Path, doc: Document) -> None:
    """A key or value holding a NUL character (a quoted ``"\\0"``): nothing can use it."""
    if isinstance(node, yaml.ScalarNode) and "\x00" in node.value:
        doc.problems.append(
            Diagnostic(
                "the value holds a NUL character (written \\0 or \\x00)",
                path=format_path(path),
                file=doc.file,
                line=node.start_mark.line + 1,
                hint="remove it: no name, path, SQL or setting can hold a NUL character",
            )
        )


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
