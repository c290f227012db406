"""One error type for every problem a user can fix; the CLI prints it without a traceback."""


class TpmeError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} ({fix})")


class NonFiniteError(TpmeError):
    """A loss, score or metric became NaN or infinite: the measurement is not a result."""
