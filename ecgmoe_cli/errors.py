"""The one project exception: core code raises it, only the CLI layer turns it into a red line."""


class EcgMoeError(Exception):
    """A user-facing failure: the message names the file (if any) and the cause in one line."""

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
