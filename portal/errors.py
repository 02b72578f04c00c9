"""Domain errors: each carries the HTTP status and a message a physicist understands.

Services raise them; the API and the portal turn them into responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portal.models import Project


class TweezerError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class InvalidInput(TweezerError):
    status_code = 400


class InsufficientCredits(TweezerError):
    status_code = 402

    def __init__(self, *, price: int, balance: int, project: Project) -> None:
        super().__init__(
            f"Not enough credits: this submission costs {price} credits and project "
            f"'{project.name}' has {balance}. Nothing was created or charged.",
            price=price,
            balance=balance,
        )


class Forbidden(TweezerError):
    """A member asking for what only the project's ADMINs may do (the API's 403; the portal hides
    such pages with a 404, as it does every page a user may not see)."""

    status_code = 403


class NotFound(TweezerError):
    status_code = 404


class Conflict(TweezerError):
    """A transition that is no longer possible (cancel a DONE job, add to a closed batch)."""

    status_code = 409


class SpendingCapExceeded(TweezerError):
    """A member's spending cap (portal.models.SpendingCap) would be passed: a 402, nothing charged."""

    status_code = 402

    def __init__(self, *, cap: int, period: str, used: int, price: int, project: Project) -> None:
        when = "this month" if period == "MONTH" else "in total"
        super().__init__(
            f"Spending cap reached: your cap in project '{project.name}' is {cap:,} credits {when}, "
            f"you have used {used:,}, and this submission costs {price:,} "
            f"({max(cap - used, 0):,} left). Nothing was created or charged.",
            cap=cap,
            period=period,
            used=used,
            price=price,
        )
