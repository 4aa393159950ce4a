"""The one exception the protocol parser raises: where (file, line, step) and what is wrong."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A protocol file is invalid.

    Attributes
    ----------
    file : str
        The file (or ``"<string>"``) the protocol came from.
    line : int or None
        1-based line of the offending YAML node, when known.
    step : str or None
        The step text (or block description) the error concerns, when there is one.
    reason : str
        What is wrong, in words.
    """

    def __init__(self, reason: str, file: str = "<string>", line: int | None = None,
                 step: str | None = None) -> None:
        self.reason = reason or "invalid protocol"
        self.file = file
        self.line = line
        self.step = step
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        step = self.step if self.step is None or len(self.step) <= 120 else self.step[:117] + "..."
        what = f" step '{step}':" if step else ""
        return f"{where}:{what} {self.reason}"

    def __reduce__(self):  # keep the keyword attributes through pickling (multiprocessing, dask)
        return (type(self), (self.reason, self.file, self.line, self.step))
