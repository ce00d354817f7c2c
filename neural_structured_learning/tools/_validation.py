"""Argument checks shared by the tools."""

import numbers


def check_int(name, value, minimum, *, allow_none=False):
    """Raises `ValueError` unless `value` is an int >= `minimum` (or None).

    Args:
        name: the argument's name, for the message.
        value: the value to check (`bool` is rejected).
        minimum: the smallest allowed value.
        allow_none: whether `None` is allowed.
    """
    if value is None and allow_none:
        return
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < minimum):
        allowed = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer >= {minimum}{allowed}. "
                         f"Received: {name}={value!r}")
