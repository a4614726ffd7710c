"""Whether a shared dependency answers, as this process sees it, logged only on change.

An outage of the metadata store or Redis fails every call that needs it; a log line
per failed call would bury the one that matters. An adapter reports each call's
outcome to its :class:`DependencyState`, which logs one WARNING when the dependency
goes away and one INFO when it is back.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class DependencyState:
    """Whether ``name`` answers; ``log`` (default: this module's logger) gets the changes."""

    def __init__(self, name: str, log: logging.Logger | None = None) -> None:
        self.name = name
        self.available = True
        self._logger = log or logger

    def failed(self, reason: BaseException | str) -> None:
        """A call failed because the dependency did not answer; log it if it did before."""
        if self.available:
            self.available = False
            self._logger.warning("%s unavailable: %s", self.name, _text(reason))

    def succeeded(self) -> None:
        """A call went through; log it if the dependency was unavailable."""
        if not self.available:
            self.available = True
            self._logger.info("%s available again", self.name)


def _text(reason: BaseException | str) -> str:
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    return reason
