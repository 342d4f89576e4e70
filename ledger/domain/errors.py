"""The two ways the ledger says no (SPEC section 6, exit codes 2 and 3)."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of the ledger's refusals; ``exit_code`` is the command's exit status."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class InvalidInput(LedgerError):
    """Bad input: a field and its problem (exit 2, nothing stored)."""

    exit_code = 2


class Refused(LedgerError):
    """Refused by a rule: ineligible, not permitted, locked (exit 3)."""

    exit_code = 3


class LockRefused(Refused):
    """An append the database lock refuses (issue #6), or an unlock of a ledger not locked (exit 3)."""


class Ineligible(Refused):
    """An enrollment that fails eligibility; ``criteria`` names every failure."""

    def __init__(self, participant: str, criteria: list[str]) -> None:
        super().__init__(
            f"{participant}: not eligible for enrollment: " + "; ".join(criteria),
            problems=criteria,
        )
        self.participant = participant
        self.criteria = criteria
