"""The engine that checks arguments against a schema of dataclass fields; the schema is ``args``.

A schema is a frozen dataclass whose fields carry, in their metadata, the
check of one value (``args.setting`` declares them: a default, one line of
doc, the check). ``validate`` turns raw
values (from Python keyword arguments or from stack config) into typed,
normalized ones and lists every mistake as a ``Problem`` naming the fields it
involves. A problem is spelled when it is shown: ``retention_days`` for a
Python caller, ``clusters[1] (beta): retentionDays`` for stack config.

Why our own engine and not pydantic (installed for the tests, not for ``pulumi
up``): ``requirements.txt`` is what the Pulumi program installs, and a
compiled validation library there buys nothing a hundred lines do not. Fields
hold Pulumi values it cannot check (``pulumi.Output`` tokens, a
``SnapshotBucket``), which would have to be waved through as arbitrary types;
a rule between two fields must name both in the caller's own spelling, which
pydantic's ``loc`` tuples carry for one field only; and the same field metadata
writes the README's configuration reference.
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from types import NoneType, UnionType
from typing import Any

Path = tuple[str, ...]
Spelling = Callable[[Path], str]


def snake_spelling(path: Path) -> str:
    """How a Python caller names a field: ``cold_storage.after_days``."""
    return ".".join(path)


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def camel_spelling(path: Path) -> str:
    """How stack config names a field: ``coldStorage.afterDays``."""
    return ".".join(camel_case(part) for part in path)


class InvalidValueError(ValueError):
    """A check's verdict on one value; the message follows the field's name."""


@dataclass(frozen=True)
class Problem:
    """One mistake: a message that names fields, spelled when it is shown.

    ``template`` holds ``{0}``, ``{1}``... for the names of ``paths``; any other
    brace in it was doubled when the message was made.
    """

    template: str
    paths: tuple[Path, ...]

    def render(self, spell: Spelling, label: str = "") -> str:
        text = self.template.format(*(spell(path) for path in self.paths))
        return f"{label}: {text}" if label else text


def problem(path: Path, message: str) -> Problem:
    """``<field> <message>``, with the message taken literally."""
    return Problem("{0} " + literal(message), (path,))


def literal(text: str) -> str:
    """``text`` safe inside a ``Problem`` template."""
    return text.replace("{", "{{").replace("}", "}}")


class ConfigError(ValueError):
    """One or more settings are wrong; the message lists every one of them."""

    def __init__(self, problems: Sequence[str], found: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        self.found = list(found)  # the same mistakes, to be spelled another way
        super().__init__(
            "invalid consul-backup configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )

    @classmethod
    def of(cls, found: Sequence[Problem], spell: Spelling = snake_spelling) -> ConfigError:
        return cls([p.render(spell) for p in found], found)


# --- checks of one value ------------------------------------------------------

Check = Callable[[Any], Any]


@dataclass(frozen=True)
class InRange:
    low: int
    high: int

    def __call__(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise InvalidValueError(f"{value} is out of range ({self.low} to {self.high})")
        return value


@dataclass(frozen=True)
class Matching:
    pattern: re.Pattern[str]
    describe: str

    def __call__(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise InvalidValueError(f"{value!r} is not {self.describe}")
        return value


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]
    describe: str

    def __call__(self, value: Any) -> Any:
        if value not in self.values:
            listed = ", ".join(map(str, self.values))
            raise InvalidValueError(f"{value!r} is not {self.describe} ({listed})")
        return value


@dataclass(frozen=True)
class EachMatching:
    pattern: re.Pattern[str]
    describe: str

    def __call__(self, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise InvalidValueError("needs at least one entry")
        for item in value:
            if not self.pattern.fullmatch(item):
                raise InvalidValueError(f"entry {item!r} is not {self.describe}")
        if len(set(value)) != len(value):
            raise InvalidValueError("lists an entry twice")
        return value


class SelfChecking:
    """Arguments that check themselves: ``ConfigError`` when made, ``problems`` without raising.

    A subclass says how in ``checked``: its values normalized, and what is wrong.
    """

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        raise NotImplementedError

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[Problem]:
        """What is wrong with these values; ``[]`` when nothing."""
        return cls.checked(values)[1]

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        normalized, found = self.checked(values)
        if found:
            raise ConfigError.of(found)
        for name, value in normalized.items():
            object.__setattr__(self, name, value)


# --- values against a schema ------------------------------------------------------


@functools.cache
def field_types(schema: type) -> dict[str, Any]:
    """The schema's field types, resolved once."""
    return typing.get_type_hints(schema)


def validate(schema: type, values: Mapping[str, Any], at: Path = ()) -> tuple[dict, list]:
    """Check ``values`` against ``schema``'s fields: (normalized values, problems)."""
    hints = field_types(schema)
    normalized: dict[str, Any] = {}
    found: list[Problem] = []
    for spec in fields(schema):
        path = (*at, spec.name)
        fallback = None if spec.default is MISSING else spec.default
        value = values.get(spec.name, MISSING)
        if value is MISSING or (value is None and spec.default is MISSING):
            if spec.default is MISSING:
                found.append(problem(path, "is required"))
            normalized[spec.name] = fallback
            continue
        value, type_problems = _typed(value, hints[spec.name], path)
        if type_problems:
            found += type_problems
            normalized[spec.name] = fallback
            continue
        check = spec.metadata.get("check")
        if check is not None and value is not None:
            try:
                value = check(value)
            except InvalidValueError as exc:
                found.append(problem(path, str(exc)))
                value = fallback
        normalized[spec.name] = value
    return normalized, found


def _typed(value: Any, hint: Any, path: Path) -> tuple[Any, list[Problem]]:
    """``value`` as the type ``hint`` names (integral floats become ints), or problems."""
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    if value is None and NoneType in options:
        return None, []
    kinds = [option for option in options if option is not NoneType]
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is str:
        return (value, []) if isinstance(value, str) else _wrong(value, path, "a string")
    if kind is bool:
        if isinstance(value, bool):
            return value, []
        return None, [problem(path, f"must be true or false, not {type_name(value)} {value!r}")]
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # numbers from YAML and from Pulumi's engine may be floats
        if isinstance(value, int) and not isinstance(value, bool):
            return value, []
        return None, [problem(path, f"must be a whole number, not {type_name(value)} {value!r}")]
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value), []
        if not isinstance(value, list | tuple):
            return _wrong(value, path, "a list")
        return None, [problem(path, "entries must be strings")]
    if isinstance(kind, type) and is_dataclass(kind):
        return _nested(value, kind, path)
    return value, []  # Pulumi inputs and resources: Pulumi checks them


def nested_schema(hint: Any) -> type | None:
    """The dataclass a field's type names (``ColdStorage | None``), if it names one."""
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    for option in options:
        if option is not NoneType and isinstance(option, type) and is_dataclass(option):
            return option
    return None


def _nested(value: Any, schema: type, path: Path) -> tuple[Any, list[Problem]]:
    if isinstance(value, schema):
        raw = {f.name: getattr(value, f.name) for f in fields(schema)}
    elif isinstance(value, Mapping):
        names = {f.name for f in fields(schema)}
        unknown = [key for key in value if key not in names]
        if unknown:
            return None, [unknown_key((*path, str(key)), names) for key in unknown]
        raw = dict(value)
    else:
        return _wrong(value, path, "an object")
    normalized, found = validate(schema, raw, path)
    return (None if found else schema(**normalized)), found


def unknown_key(path: Path, known: set[str]) -> Problem:
    """``unknown key 'x'``, with the closest known name when one is close."""
    matches = difflib.get_close_matches(path[-1], sorted(known), n=1, cutoff=0.7)
    if not matches:
        return Problem("unknown key '{0}'", (path,))
    return Problem("unknown key '{0}' (did you mean '{1}'?)", (path, (*path[:-1], matches[0])))


def _wrong(value: Any, path: Path, wanted: str) -> tuple[None, list[Problem]]:
    return None, [problem(path, f"must be {wanted}, not {type_name(value)}")]


def type_name(value: Any) -> str:
    """What a value from YAML or Python is, in words: ``a number``, ``a list``..."""
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list | tuple) else "an object"
    )
