"""The one exception type for mistakes a user can fix (bad config, missing file, ...)."""


class UserError(Exception):
    """A failed precondition; the message names the bad value and what would be valid.

    Entry scripts print it as one line and exit non-zero, without a stack trace.
    """
