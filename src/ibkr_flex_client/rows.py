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
from keyword import iskeyword
from typing import Any, TypeVar, cast

from .dates import AmbiguousDateError, parse_ib_date, parse_ib_datetime
from .errors import StatementError

__all__ = ["EMPTY_DATE_MARKERS", "EMPTY_MARKERS", "RowError", "RowReader"]

T = TypeVar("T")

# How IB writes "no value" ("Formats", docs/protocol.md); dates may also say MULTI.
EMPTY_MARKERS = frozenset({"", "-", "--", "N/A"})
EMPTY_DATE_MARKERS = EMPTY_MARKERS | {"MULTI"}
_TRUE = frozenset({"y", "yes", "true", "1"})
_FALSE = frozenset({"n", "no", "false", "0"})
# Compiled readers per RowReader: one per distinct set of attribute names seen.
MAX_PLANS = 64
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


# Each tries the text as it is first: almost no value has a comma.
def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(_number_text(text))


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float(_number_text(text))


def _to_decimal(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = _decimal_with_commas(text)
    if number.is_finite():
        return number
    raise ValueError(text)


def _decimal_with_commas(text: str) -> Decimal:
    try:
        return Decimal(_number_text(text))
    except InvalidOperation:
        raise ValueError(text) from None


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the keyword the model takes
    keys: tuple[str, ...]  # attribute names to try, in order
    convert: Callable[[str], Any] | None  # None: str, the text as IB wrote it
    optional: bool  # `X | None`: IB's empty markers become None
    empty: frozenset[str]  # which texts count as empty for this type
    default: Any  # _MISSING when required
    type_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Step:
    """One field as read from rows of one set of attribute names."""

    key: str  # what the model takes it as: the keyword, or the pydantic alias
    source: str | None  # the attribute it comes from; None: these rows have none
    missing: Any  # what it takes when the attribute is missing; _MISSING: it is required
    field: _Field


# What reads a well-formed row of one set of attribute names, and what explains a bad one.
_Plan = tuple[Callable[[Mapping[str, str]], object] | None, tuple[_Step, ...]]


def _compile(
    steps: tuple[_Step, ...], build: Callable[..., Any], by_keyword: bool
) -> Callable[[Mapping[str, str]], object] | None:
    """A reader of well-formed rows as straight-line code, the way :mod:`dataclasses` writes
    ``__init__``: per field one lookup, one conversion, one local, no loop to interpret (a
    third of the time the loop of :meth:`RowReader._read_slowly` takes). It raises on a row
    that does not fit, which the caller then reads with that loop to say why; None when
    every row would fail (a required field the rows lack).

    Only indices appear in the code: attribute names, keys and converters are bound in its
    namespace, so nothing of a statement is ever compiled."""
    namespace: dict[str, Any] = {"build": build}
    lines = ["def read(row):", "    get = row.get"]
    for i, step in enumerate(steps):
        field = step.field
        namespace.update({f"s{i}": step.source, f"c{i}": field.convert, f"m{i}": step.missing})
        namespace[f"e{i}"] = field.empty
        if step.missing is _MISSING:  # required: a row without the attribute raises KeyError
            if step.source is None:
                return None
            value = f"row[s{i}]" if field.convert is None else f"c{i}(row[s{i}].strip())"
        elif field.convert is None:  # str: the text as IB wrote it
            lines.append(f"    t = get(s{i})")
            empty = f"None if t.strip() in e{i} else " if field.optional else ""
            value = f"m{i} if t is None else {empty}t"
        elif field.optional:
            lines.append(f"    t = get(s{i})")
            value = f"m{i} if t is None else None if (t := t.strip()) in e{i} else c{i}(t)"
        else:
            lines.append(f"    t = get(s{i})")
            value = f"m{i} if t is None else c{i}(t.strip())"
        lines.append(f"    v{i} = {value}")
    if by_keyword and all(s.key.isidentifier() and not iskeyword(s.key) for s in steps):
        arguments = ", ".join(f"{step.key}=v{i}" for i, step in enumerate(steps))
    else:  # pydantic, whose aliases may be any text: a dictionary of values
        namespace.update({f"k{i}": step.key for i, step in enumerate(steps)})
        arguments = "{" + ", ".join(f"k{i}: v{i}" for i in range(len(steps))) + "}"
        arguments = f"**{arguments}" if by_keyword else arguments
    lines.append(f"    return build({arguments})")
    exec("\n".join(lines), namespace)  # noqa: S102 - indices only, see the docstring
    return cast("Callable[[Mapping[str, str]], object]", namespace["read"])


def _unwrap_optional(annotation: object) -> tuple[object, bool]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
        raise TypeError(f"unsupported union {annotation!r}: use `X | None`")
    return annotation, False


def _converter(annotation: object, day_first: bool | None) -> Callable[[str], Any] | None:
    if annotation is str or annotation is Any:
        return None
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
        self._build: Callable[..., Any]
        if dataclasses.is_dataclass(model) and isinstance(model, type):
            self._fields = _dataclass_fields(model, day_first)
            self._keys = [field.name for field in self._fields]
            self._build = model
            self._by_keyword = True
        elif hasattr(model, "model_fields") and hasattr(model, "model_validate"):
            self._fields = _pydantic_fields(model, day_first)
            # Values are already converted; pydantic checks them and runs its validators. It
            # takes a field by its alias where the field has one.
            aliases = {name: info.alias for name, info in model.model_fields.items()}
            self._keys = [aliases.get(field.name) or field.name for field in self._fields]
            self._build = model.model_validate
            self._by_keyword = False
        else:
            raise TypeError(f"{model!r} is not a dataclass or a pydantic model")
        self.model = model
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        """How to read rows with these attribute names, in this order (worked out once)."""
        exact = set(names)
        folded = {name.replace("_", "").lower(): name for name in names}
        steps = []
        for key, field in zip(self._keys, self._fields, strict=True):
            source = next((k for k in field.keys if k in exact), None)
            if source is None and len(field.keys) > 1:
                source = folded.get(field.keys[1])
            missing = field.default
            if missing is _MISSING and field.optional:
                missing = None
            steps.append(_Step(key, source, missing, field))
        if len(self._plans) >= MAX_PLANS:
            # IB writes a section's rows with one set of attributes; a statement whose rows
            # keep changing theirs gets no more compiled readers (nor a cache that grows).
            return None, tuple(steps)
        plan = self._plans[names] = (
            _compile(tuple(steps), self._build, self._by_keyword),
            tuple(steps),
        )
        return plan

    def read(self, element: ET.Element) -> object:
        """One row as a model instance; :class:`RowError` if it does not fit."""
        attributes: Mapping[str, str] = element.attrib
        names = tuple(attributes)
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plan(names)
        fast, steps = plan
        if fast is not None:
            try:
                return fast(attributes)
            except Exception:  # noqa: BLE001, S110 - read it again below, to say what is wrong
                pass
        return self._read_slowly(element, steps)

    def _read_slowly(self, element: ET.Element, steps: tuple[_Step, ...]) -> object:
        """:meth:`read`, field by field: raises the :class:`RowError` that says what is wrong
        (and gives what the fast path gives for a row that fits)."""
        attributes: Mapping[str, str] = element.attrib
        values: dict[str, Any] = {}
        for step in steps:
            field, source = step.field, step.source
            text = attributes.get(source) if source is not None else None
            if text is None:
                if step.missing is _MISSING:
                    raise self._error(element, field, source, None, "is missing")
                values[step.key] = step.missing
                continue
            stripped = text.strip()
            if field.optional and stripped in field.empty:
                values[step.key] = None
                continue
            if field.convert is None:  # str: the text as IB wrote it
                values[step.key] = text
                continue
            try:
                values[step.key] = field.convert(stripped)
                continue
            except AmbiguousDateError:
                reason = (
                    "is ambiguous: it reads as MM/dd and as dd/MM, and nothing decided which; "
                    "pass day_first=True (dd/MM) or False (MM/dd)"
                )
            except ValueError:
                reason = f"is not a valid {field.type_name}"
            raise self._error(element, field, source, text, reason)
        try:
            return self._build(**values) if self._by_keyword else self._build(values)
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
        return map(self.read, elements)
