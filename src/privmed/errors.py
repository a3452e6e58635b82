"""Errors that privmed raises for a user's mistake (bad input, bad option, spent budget).

The CLI turns a :class:`PrivmedError` into one red line and a non-zero exit; anything else is a bug
and keeps its traceback.
"""


class PrivmedError(ValueError):
    """A problem with the user's input or configuration, explained in one message."""


class DataError(PrivmedError):
    """A dataset reference or file that cannot be read; the message names the file and the reason."""


class PrivacyError(PrivmedError):
    """An invalid privacy parameter (epsilon, delta, unit, noise) or a model unfit for DP-SGD."""


class BudgetExceededError(PrivacyError):
    """A release would pass the privacy budget configured for its dataset."""


class NotFittedError(PrivmedError):
    """A method was asked to sample, privatize or report before ``fit``."""
