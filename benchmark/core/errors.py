"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class XbenchError(Exception):
    """Bad input from the user (a file, a name, a setting): the message says what is wrong and how to fix it."""


def unknown_name(kind: str, name: str, valid) -> XbenchError:
    """The error for a registry lookup that failed: it lists the valid names."""
    return XbenchError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(valid))}")
