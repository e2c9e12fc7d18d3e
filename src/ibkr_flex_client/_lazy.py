"""Names a package loads on first use (PEP 562): the network stack stays unloaded until then."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence

__all__ = ["lazy_names"]


def lazy_names(
    package: str,
    lazy: Mapping[str, str],
    namespace: MutableMapping[str, object],
    public: Sequence[str],
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` that imports each name of ``lazy`` from its submodule of
    ``package`` on first use (then keeps it in ``namespace``, like any other name), and a
    ``__dir__`` that lists it before then."""

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook's own name
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *public})

    return __getattr__, __dir__
