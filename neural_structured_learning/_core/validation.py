"""Argument checks shared by the sub-packages (one error message each)."""

import numbers


def check_int(name, value, minimum, *, allow_none=False):
    """Returns `value` as an `int`, or raises `ValueError`.

    Args:
        name: the argument's name, for the message.
        value: the value to check: an integer (not a `bool`) >= `minimum`.
        minimum: the smallest allowed value.
        allow_none: whether `None` is allowed (and returned).

    Raises:
        ValueError: "`name` must be an integer >= minimum[ or None].
            Received: name=value".
    """
    if value is None and allow_none:
        return None
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < minimum):
        allowed = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer >= {minimum}{allowed}. "
                         f"Received: {name}={value!r}")
    return int(value)
