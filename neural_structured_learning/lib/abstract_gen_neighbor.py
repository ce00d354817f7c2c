"""Abstract base class of neighbour generators."""


class GenNeighbor:
    """Base class of neighbour generators (kept from NSL 1.4).

    Subclasses implement `__init__` and `gen_neighbor()`.
    """

    def __init__(self):
        raise NotImplementedError

    def gen_neighbor(self):
        """Returns the generated neighbour(s)."""
        raise NotImplementedError
