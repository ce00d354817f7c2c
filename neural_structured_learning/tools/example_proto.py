"""`tf.train.Example` protocol buffers without TensorFlow.

The message classes here have the same full names (`tensorflow.Example`,
`tensorflow.Features`, `tensorflow.Feature`, `tensorflow.BytesList`,
`tensorflow.FloatList`, `tensorflow.Int64List`), fields and field numbers as
TensorFlow's `tensorflow/core/example/{example,feature}.proto`, so their
serialized bytes are interchangeable with `tf.train.Example`:

    >>> from neural_structured_learning.tools import example_proto
    >>> ex = example_proto.make_example({"id": [b"A"], "label": [2]})
    >>> example_proto.example_to_dict(example_proto.Example.FromString(
    ...     ex.SerializeToString()))
    {'id': [b'A'], 'label': [2]}

Why descriptors built in code rather than a `protoc`-generated `_pb2` module:
generated modules embed the protoc version and recent protobuf runtimes refuse
gencode from a newer protoc, while a `FileDescriptorProto` built with
`descriptor_pb2` works on every protobuf >= 4.21. The descriptors live in a
private `DescriptorPool`, so importing TensorFlow in the same process (which
registers the same names in the default pool) cannot conflict with them.
"""

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

__all__ = [
    "BytesList",
    "Example",
    "Feature",
    "Features",
    "FloatList",
    "Int64List",
    "example_to_dict",
    "make_example",
]

_F = descriptor_pb2.FieldDescriptorProto


def _file_descriptor():
    """Returns the `FileDescriptorProto` of feature.proto + example.proto."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="neural_structured_learning/tools/example.proto",
        package="tensorflow", syntax="proto3")

    def add_message(name, *fields):
        message = fdp.message_type.add(name=name)
        for field in fields:
            message.field.add(**field)
        return message

    def field(name, number, type_, type_name=None, repeated=False, **kw):
        label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if type_name:
            kw["type_name"] = type_name
        return dict(name=name, number=number, type=type_, label=label, **kw)

    # Repeated scalars are packed by default in proto3, as in TensorFlow.
    add_message("BytesList", field("value", 1, _F.TYPE_BYTES, repeated=True))
    add_message("FloatList", field("value", 1, _F.TYPE_FLOAT, repeated=True))
    add_message("Int64List", field("value", 1, _F.TYPE_INT64, repeated=True))
    feature = add_message(
        "Feature",
        field("bytes_list", 1, _F.TYPE_MESSAGE, ".tensorflow.BytesList",
              oneof_index=0),
        field("float_list", 2, _F.TYPE_MESSAGE, ".tensorflow.FloatList",
              oneof_index=0),
        field("int64_list", 3, _F.TYPE_MESSAGE, ".tensorflow.Int64List",
              oneof_index=0))
    feature.oneof_decl.add(name="kind")
    features = add_message(
        "Features",
        field("feature", 1, _F.TYPE_MESSAGE,
              ".tensorflow.Features.FeatureEntry", repeated=True))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(**field("key", 1, _F.TYPE_STRING))
    entry.field.add(**field("value", 2, _F.TYPE_MESSAGE, ".tensorflow.Feature"))
    add_message("Example",
                field("features", 1, _F.TYPE_MESSAGE, ".tensorflow.Features"))
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name):
    return message_factory.GetMessageClass(
        _POOL.FindMessageTypeByName(f"tensorflow.{name}"))


BytesList = _message_class("BytesList")
FloatList = _message_class("FloatList")
Int64List = _message_class("Int64List")
Feature = _message_class("Feature")
Features = _message_class("Features")
Example = _message_class("Example")


def make_example(features):
    """Builds an `Example` from a dict of feature name -> list of values.

    The values pick the feature kind: `bytes` or `str` (str is UTF-8
    encoded) give a `bytes_list`; integers only, an `int64_list`; numbers
    with at least one float, a `float_list` (stored as float32). An empty
    list gives an empty `float_list`.

    Args:
        features: `dict` of `str` -> sequence of values, or a NumPy array.

    Returns:
        An `Example`.

    Raises:
        TypeError: if a feature mixes kinds or has values of another type.
    """
    example = Example()
    feature_map = example.features.feature
    for name, values in features.items():
        values = list(values.tolist() if hasattr(values, "tolist") else values)
        kinds = {_value_kind(name, v) for v in values}
        if kinds == {"int64_list", "float_list"}:
            kinds = {"float_list"}
        if len(kinds) > 1:
            raise TypeError(
                f"Feature {name!r} mixes bytes/str and numbers; expected one "
                "kind of value per feature.")
        kind = kinds.pop() if kinds else "float_list"
        if kind == "bytes_list":
            values = [v.encode("utf-8") if isinstance(v, str) else v
                      for v in values]
        getattr(feature_map[name], kind).value.extend(values)
    return example


def _value_kind(name, value):
    if isinstance(value, (bytes, str)):
        return "bytes_list"
    if isinstance(value, bool):
        raise TypeError(f"Feature {name!r}: bool values are not supported; "
                        "use int 0/1.")
    if isinstance(value, int):
        return "int64_list"
    if isinstance(value, float):
        return "float_list"
    raise TypeError(f"Feature {name!r} has a value of type "
                    f"{type(value).__name__}; expected bytes, str, int or "
                    "float.")


def example_to_dict(example):
    """Returns an `Example`'s features as a dict of name -> list of values.

    Keys are sorted; `bytes_list` values stay `bytes`, `float_list` values are
    Python floats (the float32 values widened), `int64_list` values ints. A
    feature with no kind set maps to `[]`.

    Args:
        example: an `Example` (from this module or `tf.train.Example`).

    Returns:
        `dict` of `str` -> `list`.
    """
    result = {}
    for name in sorted(example.features.feature):
        feature = example.features.feature[name]
        kind = feature.WhichOneof("kind")
        result[name] = list(getattr(feature, kind).value) if kind else []
    return result
