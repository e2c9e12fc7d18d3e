"""The public API is pinned: what users import must keep existing."""

from __future__ import annotations

import ibkr_flex_client
import ibkr_flex_client.testing
from ibkr_flex_client import errors


def test_all_is_pinned() -> None:
    assert set(ibkr_flex_client.__all__) >= {
        "FlexClient",
        "FlexError",
        "FlexStatement",
        "download_statement",
        "fetch_statement",
        "parse_ib_date",
    }
    for name in ibkr_flex_client.__all__:
        assert hasattr(ibkr_flex_client, name)


def test_every_error_is_exported_and_rooted_at_flex_error() -> None:
    for name in errors.__all__:
        value = getattr(errors, name)
        assert getattr(ibkr_flex_client, name) is value
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, ibkr_flex_client.FlexError)


def test_error_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        if name != "Step":
            assert name in doc


def test_errors_carry_data_and_survive_pickling() -> None:
    import pickle  # noqa: PLC0415

    error = errors.TokenError(
        "IB error 1012", code=1012, message="Token has expired.", step=errors.Step.SEND_REQUEST
    )
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert type(copy) is errors.TokenError
    assert (copy.code, copy.message, copy.step, str(copy)) == (
        1012,
        "Token has expired.",
        errors.Step.SEND_REQUEST,
        "IB error 1012",
    )


def test_testing_module_exports() -> None:
    for name in ibkr_flex_client.testing.__all__:
        assert hasattr(ibkr_flex_client.testing, name)
    assert {"FakeClock", "Fault", "FlexSimulator"} <= set(ibkr_flex_client.testing.__all__)
