"""The problems found in one pipeline file, each a Diagnostic with file, line and key path."""

from __future__ import annotations

from typing import Any

from deltaflow.config import secrets
from deltaflow.config._yaml import Document, format_path, printable
from deltaflow.errors import Diagnostic

Loc = tuple[str | int, ...]


class Report:
    """Collects a file's problems once each, redacted, with the line of their key path."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []
        self.seen: set[tuple[Loc, str]] = set()
        self.flagged: set[Loc] = set()
        """Values whose variables or secrets did not resolve: their validation is moot."""
        self.unresolved: set[Loc] = set()
        """Values that are secret references, left unresolved."""
        self.deferred: list[Diagnostic] = []
        """Problems with those values: moot unless the pipeline must be built regardless."""

    def add(
        self,
        loc: Loc,
        message: str,
        hint: str | None = None,
        *,
        line: int | None = None,
        flag: bool = False,
    ) -> None:
        """Record one problem at ``loc``; ``flag`` marks the value as moot to validate."""
        if flag:
            self.flagged.add(loc)
        if (loc, message) in self.seen:
            return
        self.seen.add((loc, message))
        found = self.deferred if loc in self.unresolved else self.problems
        found.append(
            Diagnostic(
                printable(secrets.redact(message)),  # a value may be a resolved secret
                path=format_path(loc),
                file=self.doc.file,
                line=line or self.doc.line_of(loc),
                hint=printable(secrets.redact(hint)) if hint else hint,
            )
        )


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}
