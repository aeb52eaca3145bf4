"""Secret references: ``${env:NAME}`` and ``${file:path}``, resolved only when a run starts.

A resolved value is registered with :func:`redact`, which every log line, error message
and stored run record passes through, so the value never reaches output or metadata.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deltaflow.errors import SecretError, did_you_mean

_REFERENCE = re.compile(r"\$\{([A-Za-z_]+):([^}]*)\}")
PROVIDERS = ("env", "file")
MASK = "***"

_known: set[str] = set()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Mark ``value`` as secret: :func:`redact` will mask it from now on."""
    if len(value) >= 3:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """Mask every known secret value inside ``text`` (longest first)."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def has_reference(text: str) -> bool:
    return _REFERENCE.search(text) is not None


def check(text: str) -> list[str]:
    """Problems with the references in ``text`` (unknown provider, empty name)."""
    problems = []
    for provider, name in _REFERENCE.findall(text):
        if provider not in PROVIDERS:
            problems.append(
                f"unknown secret provider '{provider}' in '${{{provider}:{name}}}'."
                f"{did_you_mean(provider, PROVIDERS)}"
            )
        elif not name.strip():
            problems.append(f"secret reference '${{{provider}:}}' names nothing")
    return problems


def resolve(text: str, base_dir: Path) -> str:
    """Replace each reference in ``text`` by its value and remember the value as secret."""

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), match.group(2), base_dir)
        remember(value)
        return value

    return _REFERENCE.sub(substitute, text)


def resolve_tree(
    value: Any,
    base_dir: Path,
    on_error: Callable[[tuple[str | int, ...], SecretError], None],
    path: tuple[str | int, ...] = (),
) -> Any:
    """Resolve every reference inside dicts and lists; errors go to ``on_error`` with their path."""
    if isinstance(value, str):
        try:
            return resolve(value, base_dir)
        except SecretError as exc:
            on_error(path, exc)
            return value
    if isinstance(value, dict):
        return {k: resolve_tree(v, base_dir, on_error, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_tree(v, base_dir, on_error, (*path, i)) for i, v in enumerate(value)]
    return value


def _lookup(provider: str, name: str, base_dir: Path) -> str:
    if provider == "env":
        if name not in os.environ:
            raise SecretError(
                f"environment variable '{name}' is not set (referenced as ${{env:{name}}})",
                hint=f"export {name}=... before running, or change the reference",
            )
        return os.environ[name]
    if provider == "file":
        path = Path(name).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SecretError(
                f"cannot read secret file '{name}': {exc.strerror}",
                hint="check the path; relative paths resolve against the pipeline file",
            ) from None
    raise SecretError(
        f"unknown secret provider '{provider}'.{did_you_mean(provider, PROVIDERS)}",
        hint=f"use one of: {', '.join(PROVIDERS)}",
    )
