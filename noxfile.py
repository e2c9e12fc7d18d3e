"""The project's checks: `nox` runs lint (ruff, mypy --strict) and the tests on every Python."""

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "tests", "realtime", "demo"]
nox.options.reuse_existing_virtualenvs = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, against the package as a user installs it (not editable)."""
    session.install(".[dev]")
    # Four workers: most tests wait (on loopback, on subprocesses), so even two cores gain.
    session.run("pytest", "-m", "not realtime", "-n", "4", *session.posargs)


@nox.session(python="3.12")
def realtime(session: nox.Session) -> None:
    """The few real-time, multi-process tests (kill -9, signals, the demo), once."""
    session.install(".[dev]")
    session.run("pytest", "-m", "realtime", *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff lint and format check, mypy --strict over src, tests and bench."""
    session.install("-e", ".[dev]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict")


@nox.session(python="3.12")
def demo(session: nox.Session) -> None:
    """A user's first minute: a fresh environment, a plain install, `ibkr-flex demo` offline."""
    session.install(".")
    session.run("ibkr-flex", "demo", "--generation-seconds", "1.5")
    session.run("ibkr-flex", "demo", "--format", "csv", "--generation-seconds", "1")
    session.run("ibkr-flex", "demo", "--sync")
