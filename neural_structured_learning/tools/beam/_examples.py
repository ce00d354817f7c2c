"""Examples in TFRecord or Parquet files, for the Beam `pack_nbrs`.

Parquet files of examples hold one row per `tf.train.Example` and one column
per feature: a list column of strings/binary (`bytes_list`), of floats
(`float_list`) or of integers (`int64_list`); a scalar column counts as a
one-value list, and a null leaves the feature out of that example. Output
Parquet files use `list<binary>`, `list<float>` and `list<int64>` columns,
named by feature and sorted by name; every shard has the columns of all
output examples.
"""

_KIND_TYPES = ("bytes_list", "float_list", "int64_list")


def _arrow_kind(path, name, arrow_type):
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    scalar = arrow_type
    if (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type)):
        scalar = arrow_type.value_type
    if (pa.types.is_string(scalar) or pa.types.is_large_string(scalar)
            or pa.types.is_binary(scalar) or pa.types.is_large_binary(scalar)):
        return "bytes_list", scalar is not arrow_type
    if pa.types.is_floating(scalar):
        return "float_list", scalar is not arrow_type
    if pa.types.is_integer(scalar):
        return "int64_list", scalar is not arrow_type
    raise ValueError(
        f"The column {name!r} of the Parquet file {path!r} has type "
        f"{arrow_type}; expected strings, binary, floats or integers, or "
        "lists of them.")


def iter_parquet_examples(local_path, path):
    """Yields `(row_number, serialized Example)` for each row of a file."""
    # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq
    from neural_structured_learning.tools import example_proto
    parquet_file = pq.ParquetFile(local_path)
    kinds = [(field.name,) + _arrow_kind(path, field.name, field.type)
             for field in parquet_file.schema_arrow]
    row = 0
    for batch in parquet_file.iter_batches(batch_size=1 << 14):
        columns = [batch.column(i).to_pylist() for i in range(len(kinds))]
        for values in zip(*columns):
            example = example_proto.Example()
            feature_map = example.features.feature
            for (name, kind, is_list), value in zip(kinds, values):
                if value is None:
                    continue
                if not is_list:
                    value = [value]
                if kind == "bytes_list":
                    value = [v.encode("utf-8") if isinstance(v, str) else v
                             for v in value]
                getattr(feature_map[name], kind).value.extend(value)
            yield row, example.SerializeToString()
            row += 1


def feature_kinds(example):
    """`{name: kind}` of an Example's features that have values.

    An empty list has no reliable kind (`make_example` stores `[]` as a
    `float_list`); it is written as an empty list of its column's type.
    """
    result = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is not None and getattr(feature, kind).value:
            result[name] = kind
    return result


def merge_kinds(kind_maps):
    """Unites `{name: kind}` maps; raises if a name has two kinds."""
    result = {}
    for kinds in kind_maps:
        for name, kind in kinds.items():
            previous = result.setdefault(name, kind)
            if previous != kind:
                raise ValueError(
                    f"The feature {name!r} is a {previous} in some output "
                    f"examples and a {kind} in others; a Parquet column has "
                    "one type.")
    return result


def _arrow_schema(kinds):
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    types = {"bytes_list": pa.list_(pa.binary()),
             "float_list": pa.list_(pa.float32()),
             "int64_list": pa.list_(pa.int64())}
    return pa.schema([(name, types[kinds[name]]) for name in sorted(kinds)])


def write_parquet(f, payloads, kinds):
    """Writes serialized Examples as Parquet rows with the columns `kinds`."""
    # pylint: disable=import-outside-toplevel
    import pyarrow as pa
    import pyarrow.parquet as pq
    from neural_structured_learning.tools import example_proto
    schema = _arrow_schema(kinds or {})
    names = schema.names
    parse = example_proto.Example.FromString
    with pq.ParquetWriter(pa.PythonFile(f, mode="w"), schema) as writer:
        columns = {name: [] for name in names}
        count = 0

        def flush():
            writer.write_table(pa.table(
                [pa.array(columns[name], schema.field(name).type)
                 for name in names], schema=schema))
            for name in names:
                columns[name] = []

        for data in payloads:
            feature_map = parse(data).features.feature
            for name in names:
                feature = feature_map.get(name)
                if feature is None or feature.WhichOneof("kind") is None:
                    columns[name].append(None)
                else:
                    columns[name].append(
                        list(getattr(feature, kinds[name]).value))
            count += 1
            if count % (1 << 14) == 0:
                flush()
        if count % (1 << 14) or count == 0:
            flush()

