"""Many byte ranges concatenated in one C++ call: a pool of pieces.

`Pool` holds byte strings and ranges of buffers as the values of one
pyarrow `large_binary` array; `Pool.gather(index)` returns the values that
`index` names, concatenated in that order, through
`pyarrow.compute.take`: a C++ loop, where `b"".join` of slices needs a
Python `bytes` object per piece (the cost that dominated `pack_nbrs`'s
writer). pyarrow is the tools extra's (it also reads graph TSVs and
Parquet embeddings) and is imported when a pool is made. `Runs` builds a
pool whose values are each a run of pieces of other pools, copied once.

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


class Runs:
    """Values made of runs of pieces of source `Pool`s.

    `runs(source, pieces, counts)` declares values, value `i` being the next
    `counts[i]` pieces of `pieces` (of `source`) joined; `each(source,
    first, count)` one value per piece of a range; both return the new
    values' indices.
    `pool()` copies every value, in order, into one buffer (source by
    source, each built when first needed and released after its last
    use) and returns a pool of them.

        >>> source = Pool()
        >>> cut = source.add_cuts(b"0123456789", [2, 5])
        >>> runs = Runs()
        >>> runs.runs(source, [cut + 2, cut + 1, cut], [2, 1]).tolist()
        [0, 1]
        >>> pool = runs.pool()
        >>> bytes(pool.gather([1, 0, 1]))
        b'015678923401'
    """

    def __init__(self):
        self._blocks, self.size = [], 0

    def runs(self, source, pieces, counts):
        counts = np.asarray(counts, np.int64)
        self._blocks.append((source, np.asarray(pieces, np.int64), counts))
        self.size += len(counts)
        return self.size - len(counts) + np.arange(len(counts))

    def each(self, source, first, count):
        """One value per piece `first, ..., first + count - 1`."""
        return self.runs(source, first + np.arange(count),
                         np.ones(count, np.int64))

    def pool(self):
        sizes = [np.bincount(np.repeat(np.arange(len(counts)), counts),
                             weights=source.piece_lengths()[pieces],
                             minlength=len(counts)).astype(np.int64)
                 for source, pieces, counts in self._blocks]
        sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        ends = np.cumsum(sizes)
        data = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
        last_use = {id(block[0]): k for k, block in enumerate(self._blocks)}
        blocks, self._blocks = self._blocks, []
        start = 0
        for k, (source, pieces, counts) in enumerate(blocks):
            if source.lengths is None:
                source.build()
            out = source.gather(pieces)
            data[start:start + len(out)] = out
            start += len(out)
            if last_use[id(source)] == k:
                source.release()
            blocks[k] = None
        pool = Pool()
        pool.add_blob(data, ends)
        pool.build()
        return pool
