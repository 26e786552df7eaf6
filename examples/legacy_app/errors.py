"""The legacy app's one error type for a pipeline step that failed."""


class StepFailed(RuntimeError):
    """A pipeline step could not finish; the message says which provider said what."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
