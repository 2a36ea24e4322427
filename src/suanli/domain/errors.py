"""Domain errors. Each class names its HTTP status (`status`), the one mapping the API and the
portal both answer with."""

from __future__ import annotations

from typing import Any


class SuanliError(Exception):
    """Base of every error we raise on purpose; carries a message meant for the user."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail


class InvalidInput(SuanliError):
    """The request is well-formed but a value is not acceptable (HTTP 422)."""

    status = 422


class NotFound(SuanliError):
    """No such object, or the caller may not know that it exists (HTTP 404)."""

    status = 404


class Unauthenticated(SuanliError):
    """No credentials, or credentials that are not valid (HTTP 401)."""

    status = 401


class Forbidden(SuanliError):
    """The caller is known but its role may not do this (HTTP 403)."""

    status = 403


class Conflict(SuanliError):
    """The request clashes with the current state, e.g. a duplicate name (HTTP 409)."""

    status = 409


class IllegalTransition(Conflict):
    """A job state change that the state machine does not allow."""


class Infeasible(InvalidInput):
    """No pool in the network could ever run this job; `detail` holds the per-pool reasons."""


class PaymentRequired(InvalidInput):
    """The tenant's money (prepaid balance and credit limit, less what its unfinished jobs hold)
    does not cover the job's cost estimate (HTTP 402); the message gives the numbers."""

    status = 402


class ConnectorError(SuanliError):
    """A center's workload manager refused or failed a request (HTTP 502 when surfaced)."""

    status = 502


class TooManyAttempts(SuanliError):
    """Sign-in refused without checking the password: too many failures lately (HTTP 429);
    `retry_after_s` says when the next attempt is heard."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s} s",
                         detail={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class Busy(SuanliError):
    """Refused for now, nothing done: too many of the caller's requests of this kind are in
    progress (HTTP 429); try again when one has finished."""

    status = 429


class TooLarge(SuanliError):
    """A body over a size limit or the tenant's storage quota (HTTP 413); nothing was kept."""

    status = 413
