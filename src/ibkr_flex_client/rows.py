"""Typed rows: a Flex row's attributes converted into your dataclass or pydantic model.

Each field is read from the attribute of the same name (``tradeDate``), or, for a snake_case
field, from the attribute that matches it with underscores dropped and case ignored
(``trade_date`` -> ``tradeDate``, ``security_id`` -> ``securityID``); a dataclass field's
``metadata={"ib": "name"}`` or a pydantic field's alias names it explicitly. The value is
converted by the field's annotation. Attributes the model does not name are ignored, so an
attribute IB adds next year breaks nobody.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from .dates import parse_ib_date, parse_ib_datetime
from .errors import StatementError

__all__ = ["EMPTY_DATE_MARKERS", "EMPTY_MARKERS", "RowError", "RowReader"]

T = TypeVar("T")

# How IB writes "no value" ("Formats", docs/protocol.md); dates may also say MULTI.
EMPTY_MARKERS = frozenset({"", "-", "--", "N/A"})
EMPTY_DATE_MARKERS = EMPTY_MARKERS | {"MULTI"}
_TRUE = frozenset({"y", "yes", "true", "1"})
_FALSE = frozenset({"n", "no", "false", "0"})
_NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][+-]?\d+)?")
_MISSING = object()


class RowError(StatementError):
    """A row that does not fit the model: names the tag, the attribute and the value."""

    def __init__(
        self, text: str, *, tag: str, attribute: str, value: str | None, model: str
    ) -> None:
        super().__init__(text)
        self.tag = tag
        self.attribute = attribute
        self.value = value
        self.model = model

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_row_error, (str(self), self.tag, self.attribute, self.value, self.model))


def _rebuild_row_error(
    text: str, tag: str, attribute: str, value: str | None, model: str
) -> RowError:
    return RowError(text, tag=tag, attribute=attribute, value=value, model=model)


def _number_text(text: str) -> str:
    """IB numbers may carry thousands commas (``1,234.5``); anything else is left to fail."""
    if "," in text and _NUMBER.fullmatch(text):
        return text.replace(",", "")
    return text


def _to_int(text: str) -> int:
    return int(_number_text(text))


def _to_float(text: str) -> float:
    return float(_number_text(text))


def _to_decimal(text: str) -> Decimal:
    try:
        number = Decimal(_number_text(text))
    except InvalidOperation:
        raise ValueError(text) from None
    if not number.is_finite():
        raise ValueError(text)
    return number


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _to_enum(kind: type[enum.Enum]) -> Callable[[str], Any]:
    by_value = {str(member.value): member for member in kind}
    by_name = {member.name.lower(): member for member in kind}

    def convert(text: str) -> enum.Enum:
        found = by_value.get(text) or by_name.get(text.lower())
        if found is None:
            raise ValueError(text)
        return found

    return convert


def _str(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the keyword the model takes
    keys: tuple[str, ...]  # attribute names to try, in order
    convert: Callable[[str], Any]
    optional: bool  # `X | None`: IB's empty markers become None
    empty: frozenset[str]  # which texts count as empty for this type
    default: Any  # _MISSING when required
    type_name: str


def _unwrap_optional(annotation: object) -> tuple[object, bool]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
        raise TypeError(f"unsupported union {annotation!r}: use `X | None`")
    return annotation, False


def _converter(annotation: object, day_first: bool | None) -> Callable[[str], Any]:
    if annotation is str or annotation is Any:
        return _str
    if annotation is bool:
        return _to_bool
    if annotation is int:
        return _to_int
    if annotation is float:
        return _to_float
    if annotation is Decimal:
        return _to_decimal
    # Dates repeat all through a statement (one trade date, many trades): remember them.
    if annotation is datetime:  # before date: datetime is a date
        return functools.lru_cache(maxsize=4096)(
            lambda text: parse_ib_datetime(text, day_first=day_first)
        )
    if annotation is date:
        return functools.lru_cache(maxsize=4096)(
            lambda text: parse_ib_date(text, day_first=day_first)
        )
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _to_enum(annotation)
    raise TypeError(
        f"unsupported field type {annotation!r}: use str, int, float, Decimal, date, "
        "datetime, bool, an Enum, or `X | None` of one"
    )


def _spec(
    name: str, annotation: object, explicit: str | None, default: object, day_first: bool | None
) -> _Field:
    inner, optional = _unwrap_optional(annotation)
    keys = (explicit,) if explicit else (name, name.replace("_", "").lower())
    is_date = inner in (date, datetime)
    return _Field(
        name=name,
        keys=keys,
        convert=_converter(inner, day_first),
        optional=optional,
        empty=EMPTY_DATE_MARKERS if is_date else EMPTY_MARKERS,
        default=default,
        type_name=getattr(inner, "__name__", repr(inner)),
    )


def _dataclass_fields(model: type[Any], day_first: bool | None) -> list[_Field]:
    try:
        hints = typing.get_type_hints(model)
    except NameError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        raise TypeError(
            f"cannot resolve the annotations of {model.__name__} ({problem}): define the types "
            "it names where the model is defined, at module level"
        )
    specs = []
    for field in dataclasses.fields(model):
        if not field.init:
            continue
        default: Any = _MISSING
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        explicit = field.metadata.get("ib")
        specs.append(_spec(field.name, hints[field.name], explicit, default, day_first))
    return specs


def _pydantic_fields(model: type[Any], day_first: bool | None) -> list[_Field]:
    specs = []
    for name, info in model.model_fields.items():
        default = _MISSING if info.is_required() else info.get_default(call_default_factory=True)
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        specs.append(_spec(name, info.annotation, alias, default, day_first))
    return specs


class RowReader:
    """Turns row elements into instances of one model; build once, use for every row.

    Raises ``TypeError`` at construction for a model that is not a dataclass or pydantic
    model, or a field type it cannot convert to.
    """

    def __init__(self, model: type[Any], *, day_first: bool | None = None) -> None:
        if dataclasses.is_dataclass(model) and isinstance(model, type):
            self._fields = _dataclass_fields(model, day_first)
            self._build: Callable[[dict[str, Any]], Any] = lambda kw: model(**kw)
        elif hasattr(model, "model_fields") and hasattr(model, "model_validate"):
            self._fields = _pydantic_fields(model, day_first)
            # Values are already converted; pydantic checks them and runs its validators.
            self._build = lambda kw: model.model_validate(
                {self._alias.get(k, k): v for k, v in kw.items()}
            )
            self._alias = {
                name: info.alias for name, info in model.model_fields.items() if info.alias
            }
        else:
            raise TypeError(f"{model!r} is not a dataclass or a pydantic model")
        self.model = model
        self._resolved: dict[tuple[str, ...], list[tuple[_Field, str | None]]] = {}

    def _resolve(self, names: Iterable[str]) -> list[tuple[_Field, str | None]]:
        """Which attribute feeds each field, for rows with these attribute names (cached)."""
        key = tuple(names)
        found = self._resolved.get(key)
        if found is None:
            exact = set(key)
            folded = {name.replace("_", "").lower(): name for name in key}
            found = []
            for field in self._fields:
                source = next((k for k in field.keys if k in exact), None)
                if source is None and len(field.keys) > 1:
                    source = folded.get(field.keys[1])
                found.append((field, source))
            self._resolved[key] = found
        return found

    def read(self, element: ET.Element) -> object:
        """One row as a model instance; :class:`RowError` if it does not fit."""
        attributes: Mapping[str, str] = element.attrib
        values: dict[str, Any] = {}
        for field, source in self._resolve(attributes):
            text = attributes.get(source) if source is not None else None
            if text is None:
                if field.default is _MISSING and not field.optional:
                    raise self._error(element, field, source, None, "is missing")
                values[field.name] = None if field.default is _MISSING else field.default
                continue
            stripped = text.strip()
            if field.optional and stripped in field.empty:
                values[field.name] = None
                continue
            try:
                values[field.name] = field.convert(stripped if field.convert is not _str else text)
            except ValueError:
                reason = f"is not a valid {field.type_name}"
            else:
                continue
            raise self._error(element, field, source, text, reason)
        try:
            return self._build(values)
        except (TypeError, ValueError) as exc:  # the model's own validation refused it
            reason = str(exc).splitlines()[0]
        raise RowError(
            f"<{element.tag}> does not fit {self.model.__name__}: {reason}",
            tag=element.tag,
            attribute="",
            value=None,
            model=self.model.__name__,
        )

    def _error(
        self, element: ET.Element, field: _Field, source: str | None, value: str | None, why: str
    ) -> RowError:
        attribute = source or field.keys[0]
        shown = "" if value is None else f" value {value!r}"
        return RowError(
            f"<{element.tag}> attribute {attribute!r}{shown} {why} "
            f"(field {self.model.__name__}.{field.name})",
            tag=element.tag,
            attribute=attribute,
            value=value,
            model=self.model.__name__,
        )

    def read_all(self, elements: Iterable[ET.Element]) -> Iterator[object]:
        """Each element as a model instance, in order."""
        read = self.read
        for element in elements:
            yield read(element)
