"""Helpers shared by the tools' tests (not part of the public API)."""

from neural_structured_learning.tools import example_proto
from neural_structured_learning.tools import tfrecord


def write_examples(path, feature_dicts):
    """Writes `make_example(d)` for each dict to a TFRecord file."""
    tfrecord.write_records(path, [
        example_proto.make_example(f).SerializeToString()
        for f in feature_dicts])
    return str(path)


def read_examples(path):
    """Returns the examples of a TFRecord file as `example_to_dict` dicts."""
    return [example_proto.example_to_dict(example_proto.Example.FromString(r))
            for r in tfrecord.iter_records(str(path))]
