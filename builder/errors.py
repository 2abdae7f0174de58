"""One exception tree for every error a user can see, each class with its own exit code.

Each error prints as one line that names the problem and the fix. Tracebacks only with --debug.
"""
from __future__ import annotations

import click


class GobuildError(click.ClickException):
    """Base class; never raised directly."""

    exit_code = 1

    def format_message(self) -> str:
        return self.message


class CheckFailed(GobuildError):
    """A check found a difference (render --check); the diff has been printed."""

    exit_code = 1


class ConfigError(GobuildError):
    """The matrix, lock, selectors or options are wrong: fix the input."""

    exit_code = 2


class SourceError(GobuildError):
    """A toolchain source (go.dev, a mirror, PyPI) could not be reached or read."""

    exit_code = 3


class ChecksumError(GobuildError):
    """A downloaded file does not have the sha256 the lock names."""

    exit_code = 4


class EngineError(GobuildError):
    """The Docker engine (or buildx, or qemu) is missing or refused a request."""

    exit_code = 5


class BuildError(GobuildError):
    """An image build or its smoke test failed."""

    exit_code = 6


class RegistryError(GobuildError):
    """A push, pull or manifest operation against a registry failed, or a pulled image is wrong."""

    exit_code = 7


class BenchError(GobuildError):
    """A benchmark could not run or its limits were not in force."""

    exit_code = 8


class RegressionFound(GobuildError):
    """bench compare --fail-on-regression: a metric got significantly worse by more than allowed."""

    exit_code = 9


class Partial(GobuildError):
    """A fleet run finished without some of its hosts (unreachable at the start, lost in the
    middle, or unable to run the bench); what the others measured is written."""

    exit_code = 10


class NoSpaceError(GobuildError):
    """A local disk (the download cache) is full: not bad input, the machine needs space."""

    exit_code = 11


class UnexpectedError(GobuildError):
    """A bug or an unforeseen failure (not one of the above); --debug shows the traceback.

    70 is EX_SOFTWARE of sysexits.h: it must not be 1, which means "a check found differences".
    """

    exit_code = 70


class Interrupted(GobuildError):
    """The user pressed Ctrl-C; everything started has been cleaned up."""

    exit_code = 130
