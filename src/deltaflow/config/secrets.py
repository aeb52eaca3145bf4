"""Secret references: ``${env:NAME}`` and ``${file:path}``, resolved only when a run starts.

A resolved value is registered with :func:`remember`, and :func:`redact` masks it in
every form text can carry it in (as is, JSON-escaped, URL-encoded, in a Python repr,
SQL-quoted). Every log line, error message and stored run record passes through
:func:`redact`, so the value never reaches output or metadata. A secret of one or two
characters cannot be masked without garbling every message, so it is refused.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from deltaflow.errors import SecretError, did_you_mean

_REFERENCE = re.compile(r"\$\{([A-Za-z_]+):([^}]*)\}")
PROVIDERS = ("env", "file")
MASK = "***"
MIN_LENGTH = 3
"""The shortest secret that can be masked."""
MAX_FILE_BYTES = 65_536
"""The largest ``${file:...}`` secret (keys and certificates are a few KB)."""

_known: set[str] = set()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Mark ``value`` as secret: :func:`redact` will mask it, in every form, from now on.

    An empty value leaks nothing; a value of one or two characters raises SecretError.
    """
    if not value:
        return
    if len(value) < MIN_LENGTH:
        raise SecretError(
            f"a secret value of {len(value)} character(s) is too short to mask: "
            "it would show wherever those characters appear",
            hint=f"use a secret of at least {MIN_LENGTH} characters",
        )
    with _lock:
        _known.update(_forms(value))


def _forms(value: str) -> set[str]:
    """``value`` as text may carry it: as is, inside JSON (ASCII or not), URL-encoded, in a
    repr, inside an SQL string literal."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
        repr(value)[1:-1],
        ascii(value)[1:-1],
        value.replace("'", "''"),
    }
    return {form for form in forms if len(form) >= MIN_LENGTH}


def redact(text: str) -> str:
    """Mask every known secret value inside ``text``, in every form (longest first)."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_tree(value: Any) -> Any:
    """``value`` with every string inside dicts and lists (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_tree(k): redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


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
        _check_value(match.group(0), value)
        remember(value)
        return value

    return _REFERENCE.sub(substitute, text)


def _check_value(reference: str, value: str) -> None:
    """A resolved value that cannot be used or cannot be masked (never shown)."""
    if "\x00" in value:
        raise SecretError(
            f"the value of {reference} holds a NUL character",
            hint="no password, key or connection string can hold one: fix the value",
        )
    if 0 < len(value) < MIN_LENGTH:
        raise SecretError(
            f"the value of {reference} is too short to mask ({len(value)} character(s)): "
            "it would show wherever those characters appear",
            hint=f"use a secret of at least {MIN_LENGTH} characters, or write the value "
            "in the file if it is not secret",
        )


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
        return _read_file(name, path if path.is_absolute() else base_dir / path)
    raise SecretError(
        f"unknown secret provider '{provider}'.{did_you_mean(provider, PROVIDERS)}",
        hint=f"use one of: {', '.join(PROVIDERS)}",
    )


def _read_file(name: str, path: Path) -> str:
    """The text of a secret file, stripped: a regular file of at most MAX_FILE_BYTES of
    UTF-8. Errors name the file, never its content."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    except OSError as exc:
        raise _unreadable(name, exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _unreadable(name, "not a regular file (a device, a pipe or a directory)")
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _unreadable(name, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _unreadable(name, f"larger than the limit of {MAX_FILE_BYTES:,} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise _unreadable(name, f"not UTF-8 text (a byte at offset {exc.start} is not)") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _unreadable(name: str, reason: str) -> SecretError:
    return SecretError(
        f"cannot read secret file '{name}': {reason}",
        hint="check the path; relative paths resolve against the pipeline file",
    )
