"""Checks shared by every declarative file: unknown keys, required values, close names."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from xcpbuild.errors import ConfigError

_Word = TypeVar("_Word", bound=str)


def suggest(name: str, known: Iterable[str], fallback: str) -> str:
    """A "did you mean" hint for ``name`` among ``known``, else ``fallback``."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean `{close[0]}`?" if close else fallback


def reject_unknown(found: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """ConfigError for the first key of ``found`` not in ``allowed``, suggesting the closest."""
    allowed = sorted(allowed)
    for key in found:
        if key not in allowed:
            raise ConfigError(
                f"unknown key `{key}` in {where}",
                hint=suggest(key, allowed, f"allowed keys: {', '.join(allowed)}"),
            )


def require(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``data[key]``, which must exist and be a ``kind``."""
    if key not in data:
        raise ConfigError(f"{where} is missing `{key}`", hint=f"add `{key} = ...` to it")
    value = data[key]
    if not isinstance(value, kind):
        raise ConfigError(f"`{key}` in {where} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """The tables of ``text``; ConfigError naming ``where`` when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of the file ``path``; ConfigError when it is missing or not TOML."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    return parse_toml(text, str(path))


def one_of(value: object, choices: tuple[_Word, ...]) -> _Word | None:
    """``value`` as one of the vocabulary ``choices`` (a Literal's arguments), or None."""
    for choice in choices:
        if value == choice:
            return choice
    return None
