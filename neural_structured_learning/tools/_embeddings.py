"""Reading `(id, embedding)` pairs from TFRecord, Parquet and NumPy files."""

import logging
import os

import numpy as np

from neural_structured_learning._core import progress as _progress
from neural_structured_learning.tools import _fileio

_logger = logging.getLogger(__name__)

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CHUNK_ROWS = 1 << 16


def file_format(path):
    """Returns "tfrecord", "parquet", "npy" or "npz" from a file name."""
    lower = path.lower()
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith(".npz"):
        return "npz"
    return "tfrecord"


class _RowBuffer:
    """Collects embedding rows of one width into float32 chunks."""

    def __init__(self):
        self.ids = []
        self.width = None
        self._first = None
        self._chunks = []
        self._filled = 0

    def _check_width(self, width, where):
        if self.width is None:
            if width == 0:
                raise ValueError(f"The embedding {where} is empty.")
            self.width, self._first = width, where
        elif width != self.width:
            raise ValueError(
                f"The embedding {where} has {width} values; expected "
                f"{self.width} like the first embedding ({self._first}).")

    def _room(self):
        if not self._chunks or self._filled == len(self._chunks[-1]):
            self._chunks.append(np.empty((_CHUNK_ROWS, self.width), np.float32))
            self._filled = 0
        return self._chunks[-1]

    def add_row(self, node_id, values, where):
        self._check_width(len(values), where)
        self._room()[self._filled] = values
        self._filled += 1
        self.ids.append(node_id)

    def add_rows(self, node_ids, rows, where):
        """Adds a 2-D block; `where(i)` describes row `i` for errors."""
        self._check_width(rows.shape[1], where(0))
        start = 0
        while start < len(rows):
            chunk = self._room()
            take = min(len(chunk) - self._filled, len(rows) - start)
            chunk[self._filled:self._filled + take] = rows[start:start + take]
            self._filled += take
            start += take
        self.ids.extend(node_ids)

    def result(self):
        if not self._chunks:
            return self.ids, np.zeros((0, 0), np.float32)
        self._chunks[-1] = self._chunks[-1][:self._filled]
        vectors = np.concatenate(self._chunks)
        self._chunks = []
        return self.ids, vectors


def read_embeddings(paths, *, id_feature_name, embedding_feature_name,
                    progress=None):
    """Reads node ids and embeddings from TFRecord, Parquet or NumPy files.

    * TFRecord (any other suffix): `tf.train.Example`s whose
      `id_feature_name` feature is a `bytes_list` (first value, UTF-8) and
      whose `embedding_feature_name` feature is a `float_list`. A record
      without either feature is skipped with a logged error, as in NSL 1.4.
    * Parquet (`.parquet`, `.pq`): column `id_feature_name` (string, binary or
      integer) and column `embedding_feature_name` (list of floats). Rows
      with a null id or embedding are skipped with a logged error.
    * `.npz`: arrays named `id_feature_name` (1-D) and
      `embedding_feature_name` (2-D).
    * `.npy`: one 2-D float array; row `i` of all `.npy` rows read so far
      gets the id `str(i)`.

    When an id occurs more than once the last embedding wins (as NSL 1.4).

    Args:
        paths: a file name, a glob, or a list of them.
        id_feature_name: name of the id feature / column / array.
        embedding_feature_name: name of the embedding feature / column /
            array.
        progress: show a progress bar (`None`: only on a terminal).

    Returns:
        `(ids, vectors)`: a list of `n` distinct `str` ids and a float32
        array of shape `(n, d)`.

    Raises:
        ValueError: if embeddings have different widths, contain non-finite
            values, a named column or array is missing, or no embedding is
            found at all.
        TFRecordError: for a corrupt TFRecord file.
    """
    files = _fileio.expand_paths(paths, what="`embedding_files`")
    rows = _RowBuffer()
    skipped = 0
    npy_rows = 0
    sizes = [os.path.getsize(path) for path in files]
    with _progress.progress_bar(desc="Reading embeddings", unit="B",
                                total=sum(sizes), enabled=progress) as bar:
        for path, size in zip(files, sizes):
            kind = file_format(path)
            if kind == "tfrecord":
                skipped += _read_tfrecord(path, rows, id_feature_name,
                                          embedding_feature_name, bar)
            else:
                if kind == "parquet":
                    skipped += _read_parquet(path, rows, id_feature_name,
                                             embedding_feature_name)
                elif kind == "npz":
                    _read_npz(path, rows, id_feature_name,
                              embedding_feature_name)
                else:
                    npy_rows = _read_npy(path, rows, npy_rows)
                bar.update(size)
    ids, vectors = rows.result()
    if skipped:
        _logger.warning("Skipped %d input record(s) without an id or an "
                        "embedding.", skipped)
    if not ids:
        raise ValueError(f"No embeddings found in {files!r} (looked for the "
                         f"id {id_feature_name!r} and the embedding "
                         f"{embedding_feature_name!r}).")
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"The embedding of id {ids[i]!r} contains a NaN or "
                         f"infinite value ({int(bad.sum())} such rows).")
    return _last_occurrences(ids, vectors)


def _last_occurrences(ids, vectors):
    last = {node_id: i for i, node_id in enumerate(ids)}
    if len(last) == len(ids):
        return ids, vectors
    _logger.warning("%d duplicate id(s) in the embeddings; the last "
                    "embedding of each id is used.", len(ids) - len(last))
    keep = np.fromiter(sorted(last.values()), np.int64, len(last))
    return [ids[i] for i in keep], vectors[keep]


def _read_tfrecord(path, rows, id_name, embedding_name, bar):
    """Adds a TFRecord file's embeddings to `rows`; returns records skipped.

    Records in the layout serializers write are decoded in bulk from their
    bytes (`_wire`); any other record goes through its protobuf message
    (`_add_example`), which defines the behaviour. Rows keep file order.
    """
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import _wire
    from neural_structured_learning.tools import tfrecord
    id_key = id_name.encode("utf-8")
    embedding_key = embedding_name.encode("utf-8")
    skipped = [0]
    for chunk in tfrecord.iter_record_chunks(path):
        bar.update(int(chunk.lengths.sum()) + 16 * len(chunk))
        u8 = np.frombuffer(chunk.buffer, np.uint8)
        count = len(chunk)
        regular, _, entries = _wire.example_entries(
            u8, chunk.data_starts, chunk.data_starts + chunk.lengths)
        _wire.check_examples(chunk, path,
                             _wire.valid_examples(u8, regular, entries))
        id_entry = entries.last_per_record(entries.with_key(u8, id_key),
                                           count)
        embedding_entry = entries.last_per_record(
            entries.with_key(u8, embedding_key), count)
        fast = regular & (id_entry >= 0) & (embedding_entry >= 0)
        candidates = np.flatnonzero(fast)
        entry = id_entry[candidates]
        id_ok, id_start, id_end = _wire.single_bytes_values(
            u8, entries.payload_start[entry], entries.end[entry])
        entry = embedding_entry[candidates]
        float_ok, float_start, width = _wire.packed_float_values(
            u8, entries.payload_start[entry], entries.end[entry])
        fast[candidates[~(id_ok & float_ok)]] = False
        value_start = np.zeros(count, np.int64)
        value_start[candidates] = float_start
        widths = np.zeros(count, np.int64)
        widths[candidates] = width
        bounds = np.zeros((count, 2), np.int64)
        bounds[candidates, 0] = id_start
        bounds[candidates, 1] = id_end
        try:
            node_ids = [chunk.buffer[a:b].decode("utf-8") if ok else None
                        for a, b, ok in zip(bounds[:, 0].tolist(),
                                            bounds[:, 1].tolist(),
                                            fast.tolist())]
        except UnicodeDecodeError:
            fast[:] = False  # the slow path names the bad id
            node_ids = [None] * count
        _add_chunk(chunk, path, rows, fast, node_ids, value_start, widths,
                   id_name, embedding_name, skipped)
    return skipped[0]


def _add_chunk(chunk, path, rows, fast, node_ids, value_start, widths,
               id_name, embedding_name, skipped):
    """Adds a chunk's records in order: runs of fast records in bulk."""
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import _wire
    from neural_structured_learning.tools import example_proto
    parse = example_proto.Example.FromString
    count = len(chunk)
    offsets = chunk.offsets

    def where(i):
        return (f"(file {path!r}, record {chunk.first_index + i} at byte "
                f"offset {int(offsets[i])})")

    if not count:
        return
    # Runs of consecutive fast records of one width go in bulk.
    key = np.where(fast, widths, -1)
    cuts = np.r_[0, np.flatnonzero(np.diff(key)) + 1, count].tolist()
    for start, stop in zip(cuts[:-1], cuts[1:]):
        width = int(key[start])
        if width >= 0 and rows.width in (None, width):
            ids = node_ids[start:stop]
            rows.add_rows(ids, _wire.gather_floats(
                chunk.buffer, value_start[start:stop], width),
                          lambda k, first=start, ids=ids: (
                              f"of id {ids[k]!r} {where(first + k)}"))
            continue
        for i in range(start, stop):
            features = parse(chunk.data(i)).features.feature
            skipped[0] += _add_example(features, rows, id_name,
                                       embedding_name, where(i), skipped[0])


def _add_example(features, rows, id_name, embedding_name, where, skipped):
    """Adds one parsed example's embedding; returns 1 if skipped, else 0."""
    id_feature = features.get(id_name)
    if id_feature is None or not id_feature.bytes_list.value:
        if skipped < 5:
            _logger.error("No bytes_list feature %r in the record %s; "
                          "skipped. Its features: %s", id_name, where,
                          sorted(features))
        return 1
    node_id = _decode_id(id_feature.bytes_list.value[0], where)
    embedding = features.get(embedding_name)
    if embedding is None:
        if skipped < 5:
            _logger.error("No feature %r in the record of id %r %s; "
                          "skipped.", embedding_name, node_id, where)
        return 1
    kind = embedding.WhichOneof("kind")
    if kind not in ("float_list", None):
        raise ValueError(
            f"The feature {embedding_name!r} of id {node_id!r} {where} is "
            f"a {kind}; expected a float_list.")
    rows.add_row(node_id, embedding.float_list.value,
                 f"of id {node_id!r} {where}")
    return 0


def _decode_id(raw, where):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"The id {raw!r} {where} is not UTF-8.") from None


def _read_parquet(path, rows, id_name, embedding_name):
    """Adds a Parquet file's embeddings to `rows`; returns rows skipped."""
    # pylint: disable=import-outside-toplevel
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    parquet_file = pq.ParquetFile(path)
    columns = parquet_file.schema_arrow.names
    for name in (id_name, embedding_name):
        if name not in columns:
            raise ValueError(f"The Parquet file {path!r} has no column "
                             f"{name!r}; its columns are {columns}.")
    skipped = 0
    first_row = 0
    for batch in parquet_file.iter_batches(batch_size=_CHUNK_ROWS,
                                           columns=[id_name, embedding_name]):
        id_column, embedding_column = batch.column(0), batch.column(1)
        if not (pa.types.is_list(embedding_column.type)
                or pa.types.is_large_list(embedding_column.type)
                or pa.types.is_fixed_size_list(embedding_column.type)):
            raise ValueError(
                f"The column {embedding_name!r} of {path!r} has type "
                f"{embedding_column.type}; expected a list of floats.")
        valid = pc.and_(pc.is_valid(id_column), pc.is_valid(embedding_column))
        row_numbers = np.arange(first_row, first_row + len(batch))
        first_row += len(batch)
        if not pc.all(valid).as_py():
            skipped += len(batch) - pc.sum(valid).as_py()
            id_column = id_column.filter(valid)
            embedding_column = embedding_column.filter(valid)
            row_numbers = row_numbers[valid.to_numpy(zero_copy_only=False)]
        node_ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    for v in id_column.to_pylist()]
        lengths = pc.list_value_length(embedding_column).to_numpy()
        width = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != width).any():
            i = int(np.flatnonzero(lengths != width)[0])
            raise ValueError(
                f"The embedding of id {node_ids[i]!r} (file {path!r}, row "
                f"{row_numbers[i]}) has {lengths[i]} values; expected {width} "
                f"like id {node_ids[0]!r} (row {row_numbers[0]}).")
        if not len(lengths):
            continue
        values = pc.list_flatten(embedding_column).to_numpy(
            zero_copy_only=False).astype(np.float32, copy=False)
        rows.add_rows(node_ids, values.reshape(len(node_ids), width),
                      lambda i, ids=node_ids, rn=row_numbers: (
                          f"of id {ids[i]!r} (file {path!r}, row {rn[i]})"))
    if skipped:
        _logger.error("Skipped %d row(s) of %r with a null id or embedding.",
                      skipped, path)
    return skipped


def _read_npz(path, rows, id_name, embedding_name):
    with np.load(path, allow_pickle=False) as arrays:
        for name in (id_name, embedding_name):
            if name not in arrays.files:
                raise ValueError(f"The .npz file {path!r} has no array "
                                 f"{name!r}; its arrays are {arrays.files}.")
        node_ids = arrays[id_name]
        vectors = arrays[embedding_name]
    if vectors.ndim != 2 or node_ids.shape != (len(vectors),):
        raise ValueError(
            f"In {path!r}, {embedding_name!r} must be 2-D and {id_name!r} 1-D "
            f"of the same length. Received shapes {vectors.shape} and "
            f"{node_ids.shape}.")
    node_ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
                for v in node_ids.tolist()]
    rows.add_rows(node_ids, vectors,
                  lambda i: f"of id {node_ids[i]!r} (file {path!r}, row {i})")


def _read_npy(path, rows, first_id):
    vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    if vectors.ndim != 2:
        raise ValueError(f"The .npy file {path!r} must hold a 2-D array "
                         f"(num_nodes, dim). Received shape {vectors.shape}.")
    node_ids = [str(i) for i in range(first_id, first_id + len(vectors))]
    rows.add_rows(node_ids, vectors,
                  lambda i: f"of row {i} of {os.path.basename(path)!r}")
    return first_id + len(vectors)
