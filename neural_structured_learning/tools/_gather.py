"""Many byte ranges concatenated in one C++ call: a pool of pieces.

`Pool` holds byte strings and ranges of buffers as the values of one
pyarrow `large_binary` array; `Pool.gather(index)` returns the values that
`index` names, concatenated in that order, through
`pyarrow.compute.take`: a C++ loop, where `b"".join` of slices needs a
Python `bytes` object per piece (the cost that dominated `pack_nbrs`'s
writer). pyarrow is the tools extra's (it also reads graph TSVs and
Parquet embeddings) and is imported when a pool is made.

    >>> pool = Pool()
    >>> first = pool.add_values([b"ab", b"", b"cde"])
    >>> cut = pool.add_cuts(b"0123456789", [1, 3, 6, 9])
    >>> pool.build()
    >>> bytes(pool.gather([first + 2, cut + 3, first, cut + 1]))
    b'cde678ab12'
"""

import numpy as np


class Pool:
    """Byte pieces, numbered in the order they are added."""

    def __init__(self):
        # pylint: disable=import-outside-toplevel
        import pyarrow
        import pyarrow.compute
        self._pa, self._take = pyarrow, pyarrow.compute.take
        self._parts = []
        self._array = None
        self.lengths = None  # int64, per value, after `build`
        self.size = 0  # number of values

    def add_blob(self, blob, ends):
        """Adds `blob[ends[k - 1]:ends[k]]` (from 0 for `k = 0`) as values.

        Returns the index of the first one.
        """
        ends = np.asarray(ends, np.int64)
        offsets = np.zeros(len(ends) + 1, np.int64)
        offsets[1:] = ends
        return self._add(blob, offsets)

    def add_values(self, values):
        """Adds each `bytes` of `values`; returns the first one's index."""
        return self.add_blob(b"".join(values), np.cumsum(
            np.fromiter(map(len, values), np.int64, len(values))))

    def add_cuts(self, buffer, cuts):
        """Adds `buffer` cut at the offsets `cuts` (sorted), without a copy yet.

        Value `base + i` is `buffer[cuts[i - 1]:cuts[i]]` (from 0 for
        `i = 0`; the last value runs to the end), where `base` is returned:
        the piece starting at `cuts[i]` is value `base + i + 1`.
        """
        offsets = np.empty(len(cuts) + 2, np.int64)
        offsets[0], offsets[-1] = 0, len(buffer)
        offsets[1:-1] = cuts
        return self._add(buffer, offsets)

    def _add(self, data, offsets):
        if len(offsets) > 1 and (np.diff(offsets).min() < 0
                                 or offsets[-1] > len(data)):
            raise ValueError("Pool pieces must be sorted cuts within the "
                             "buffer.")
        pa = self._pa
        array = pa.Array.from_buffers(
            pa.large_binary(), len(offsets) - 1,
            [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        base = self.size
        self._parts.append((array, np.diff(offsets)))
        self.size += len(offsets) - 1
        return base

    def piece_lengths(self):
        """The byte length of every value (int64), before or after `build`."""
        if self.lengths is not None:
            return self.lengths
        parts = [lengths for _, lengths in self._parts]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def build(self):
        """Joins the pieces added so far into one array (a copy, unless one part)."""
        arrays, lengths = zip(*self._parts) if self._parts else ((), ())
        pa = self._pa
        if len(arrays) == 1:
            self._array = arrays[0]  # no copy
        else:
            self._array = (pa.concat_arrays(list(arrays)) if arrays else
                           pa.array([], pa.large_binary()))
        self.lengths = (np.concatenate(lengths) if lengths else
                        np.zeros(0, np.int64))
        self._parts = []

    def release(self):
        """Drops the built array (and the buffers it holds)."""
        self._array = None

    def gather(self, index):
        """The values `index` names, concatenated: a writable `uint8` array."""
        index = np.ascontiguousarray(index, np.int64)
        total = int(self.lengths[index].sum())
        if not total:
            return np.zeros(0, np.uint8)
        pa = self._pa
        indices = pa.Array.from_buffers(pa.int64(), len(index),
                                        [None, pa.py_buffer(index)])
        data = self._take(self._array, indices).buffers()[2]
        out = np.frombuffer(data, np.uint8, total)
        return out if out.flags.writeable else out.copy()
