"""`pack_nbrs` as an Apache Beam pipeline (`nsl.tools.beam.pack_nbrs`)."""

import logging

import apache_beam as beam

from neural_structured_learning._core import naming
from neural_structured_learning._core import validation as _validation
from neural_structured_learning.tools import _packer
from neural_structured_learning.tools.beam import _common

_logger = logging.getLogger(__name__)
_METRICS = "nsl.beam.pack_nbrs"


def pack_nbrs(labeled_examples_path, unlabeled_examples_path, graph_path,
              output_training_data_path, add_undirected_edges=False,
              max_nbrs=None, id_feature_name="id", *, unlabeled_label=None,
              label_feature_name="label", output_shards=1, runner=None,
              pipeline_options=None):
    """`nsl.tools.pack_nbrs` as a Beam pipeline: same arguments, same output.

    The examples are joined with the graph by id (four shuffles: records by
    id with their out-edges, candidate neighbours by target id, chosen
    neighbours by seed id, output shards), so no worker holds more than one
    id's records and edges, one seed's neighbours, or one output shard.
    Each input file is read by one worker: shard large inputs.

    The output is that of `nsl.tools.pack_nbrs` on the same inputs: the
    same merged examples (same neighbours, weights, tie-breaking and
    features), in the same order. With `output_shards=1` it is the file
    `output_training_data_path`; with `output_shards=N` it is `N` files
    `output_training_data_path-0000i-of-0000N` whose concatenation, in name
    order, is that file. Outputs are written to a temporary directory and
    moved into place at the end: a failed run leaves no output.

    Formats: TFRecord files of `tf.train.Example`, or Parquet files
    (`.parquet`, `.pq`; one column per feature, see
    `nsl.tools.beam._examples`), for the inputs and the output (chosen by
    the file suffix); graph TSV files as for `pack_nbrs`. Paths may be
    local, `gs://`, `s3://`... (any Beam file system), and globs.

    Args:
        labeled_examples_path, unlabeled_examples_path, graph_path,
            output_training_data_path, add_undirected_edges, max_nbrs,
            id_feature_name, unlabeled_label, label_feature_name: as for
            `nsl.tools.pack_nbrs`.
        output_shards: number of output files.
        runner: a Beam runner name ("DirectRunner", "DataflowRunner",
            "FlinkRunner", "SparkRunner", "PortableRunner"...); `None` uses
            the one in `pipeline_options`, else the DirectRunner.
        pipeline_options: Beam pipeline options: a list of flags
            (`["--direct_num_workers=2"]`), a dict, or a `PipelineOptions`.

    Returns:
        The Beam `PipelineResult`.

    Raises:
        ValueError, FileNotFoundError, PermissionError: for invalid
            arguments or paths, checked before the pipeline starts.
        PipelineError: (`nsl.tools.beam.PipelineError`) when the pipeline
            fails, e.g. for a malformed input file or no labeled example;
            the message gives the worker's error.
    """
    unlabeled_label = _packer.check_arguments(
        max_nbrs, unlabeled_label, label_feature_name, id_feature_name)
    _validation.check_int("output_shards", output_shards, 1)
    output = _common.check_output(output_training_data_path,
                                  what="`output_training_data_path`")
    labeled_files = _common.expand(labeled_examples_path,
                                   what="`labeled_examples_path`")
    unlabeled_files = (_common.expand(unlabeled_examples_path,
                                      what="`unlabeled_examples_path`")
                       if unlabeled_examples_path else [])
    graph_files = _common.expand(graph_path, what="`graph_path`")
    # Scan order of the single-machine tool: unlabeled files, then labeled.
    inputs = [(ordinal, path, ordinal >= len(unlabeled_files))
              for ordinal, path in enumerate(unlabeled_files + labeled_files)]
    output_format = "parquet" if _common.is_parquet(output) else "tfrecord"
    options = _common.make_options(runner, pipeline_options)
    temp_dir = _common.temp_dir_for(output)
    label = (None if unlabeled_label is None
             else (label_feature_name, unlabeled_label))
    max_nbrs = None if max_nbrs is None else int(max_nbrs)

    def build(p):
        records = (p
                   | "ExampleFiles" >> beam.Create(inputs)
                   | "SpreadExampleFiles" >> beam.Reshuffle()
                   | "ReadExamples" >> beam.FlatMap(_read_examples,
                                                    id_feature_name))
        edges = (p
                 | "GraphFiles" >> beam.Create(graph_files)
                 | "SpreadGraphFiles" >> beam.Reshuffle()
                 | "ReadGraph" >> beam.FlatMap(_read_edges,
                                               add_undirected_edges))
        by_source = (
            {"records": records, "edges": edges}
            | "JoinSources" >> beam.CoGroupByKey()
            | "Seeds" >> beam.ParDo(_SourceFn(label)).with_outputs(
                "nodes", "seeds", "candidates", "labeled"))
        chosen = (
            {"node": by_source.nodes, "candidates": by_source.candidates}
            | "JoinTargets" >> beam.CoGroupByKey()
            | "Targets" >> beam.ParDo(_TargetFn()))
        merged = (
            {"seed": by_source.seeds, "nbrs": chosen}
            | "JoinNeighbors" >> beam.CoGroupByKey()
            | "Merge" >> beam.ParDo(_MergeFn(max_nbrs,
                                             output_format == "parquet"))
            .with_outputs("kinds", main="examples"))
        schema = None
        if output_format == "parquet":
            schema = merged.kinds | "Columns" >> beam.CombineGlobally(
                _MergeKindsFn())
        num_labeled = (by_source.labeled
                       | "CountLabeled" >> beam.combiners.Count.Globally())
        _common.write_sorted(
            merged.examples, output, output_shards, output_format, temp_dir,
            schema=schema, check=_NeedLabeled(labeled_files),
            check_value=num_labeled)

    result = _common.run_pipeline(build, options, [temp_dir])
    missing = _common.counter_value(result, _METRICS, "edges_to_missing_ids")
    if missing:
        _logger.warning(
            "%d graph edge(s) link a seed example to an id with no example; "
            "they are ignored.", missing)
    _logger.info("Wrote %d merged examples to %s.",
                 _common.counter_value(result, _METRICS, "merged_examples"),
                 output)
    return result


class _NeedLabeled:
    """The commit check: at least one labeled example."""

    def __init__(self, labeled_files):
        self._files = labeled_files

    def __call__(self, count):
        if not count:
            raise ValueError(f"No labeled examples found in {self._files!r}.")


def _read_examples(element, id_feature_name):
    """Yields `(id, (ordinal, index, labeled, data))` for one input file."""
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import example_proto
    from neural_structured_learning.tools import tfrecord
    from neural_structured_learning.tools.beam import _examples
    ordinal, path, labeled = element
    parse = example_proto.Example.FromString
    with _common.local_copy(path) as local:
        if _common.is_parquet(path):
            records = _examples.iter_parquet_examples(local, path)
            where = "row {index}"
        else:
            records = tfrecord.iter_file_records(local)
            where = "record {index} at byte offset {offset}"
        for index, (offset, data) in enumerate(records):
            node_id = _packer.example_id(parse(data), id_feature_name,
                             f"{path!r}, " + where.format(index=index,
                                                          offset=offset))
            yield node_id, (ordinal, index, labeled, data)


def _read_edges(path, undirected):
    """Yields `(source, (target, weight))` for each line of a graph file."""
    # pylint: disable=import-outside-toplevel
    from neural_structured_learning.tools import graph_utils
    with _common.local_copy(path) as local:
        for source, target, weight in graph_utils.iter_tsv_edges(local):
            yield source, (target, weight)
            if undirected:
                yield target, (source, weight)


class _SourceFn(beam.DoFn):
    """Per id: its example (the last record) and, for seeds, its edges.

    Outputs `nodes` `(id, data)`, `seeds` `(id, (sort_key, data, label))`,
    `candidates` `(target, (id, weight))` (one per target, largest weight)
    and `labeled` (one `None` per labeled id).
    """

    def __init__(self, label):
        super().__init__()
        self._label = label

    def process(self, element):
        node_id, grouped = element
        records = list(grouped["records"])
        if not records:
            return  # edges from an id with no example: ignored
        last = max(records, key=lambda r: (r[0], r[1]))
        data = last[3]
        labeled_positions = [(r[0], r[1]) for r in records if r[2]]
        yield beam.pvalue.TaggedOutput("nodes", (node_id, data))
        if labeled_positions:
            sort_key, label = (0,) + min(labeled_positions), None
            yield beam.pvalue.TaggedOutput("labeled", None)
        elif self._label is not None:
            sort_key = (1,) + min((r[0], r[1]) for r in records)
            label = self._label
        else:
            return
        yield beam.pvalue.TaggedOutput("seeds", (node_id,
                                                 (sort_key, data, label)))
        best = {}
        for target, weight in grouped["edges"]:
            if target not in best or weight > best[target]:
                best[target] = weight
        for target, weight in best.items():
            yield beam.pvalue.TaggedOutput("candidates",
                                           (target, (node_id, weight)))


class _TargetFn(beam.DoFn):
    """Per target id: `(seed, (target, weight, target's data))`."""

    def __init__(self):
        super().__init__()
        self._missing = beam.metrics.Metrics.counter(_METRICS,
                                                     "edges_to_missing_ids")

    def process(self, element):
        target, grouped = element
        nodes = list(grouped["node"])
        if not nodes:
            self._missing.inc(sum(1 for _ in grouped["candidates"]))
            return
        data = nodes[0]
        for seed, weight in grouped["candidates"]:
            yield seed, (target, weight, data)


class _MergeFn(beam.DoFn):
    """Per seed: `(sort_key, merged example)`, as `_packer._Merger.merge`."""

    def __init__(self, max_nbrs, want_kinds):
        super().__init__()
        self._max_nbrs = max_nbrs
        self._want_kinds = want_kinds
        self._merged = beam.metrics.Metrics.counter(_METRICS,
                                                    "merged_examples")
        self._kinds = None

    def start_bundle(self):
        self._kinds = {}

    def process(self, element):
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.tools import example_proto
        from neural_structured_learning.tools.beam import _examples
        _, grouped = element
        seeds = list(grouped["seed"])
        if not seeds:
            return
        sort_key, data, label = seeds[0]
        # Weight descending, then the larger id (Python str order) first.
        nbrs = sorted(grouped["nbrs"], key=lambda n: (n[1], n[0]),
                      reverse=True)
        if self._max_nbrs is not None:
            nbrs = nbrs[:self._max_nbrs]
        parse = example_proto.Example.FromString
        merged = parse(data)
        features = merged.features.feature
        if label is not None:
            name, value = label
            features[name].Clear()
            features[name].int64_list.value.append(value)
        features[naming.NUM_NBRS_FEATURE].int64_list.value.append(len(nbrs))
        for i, (_, weight, nbr_data) in enumerate(nbrs):
            prefix = f"{naming.NBR_PREFIX}{i}_"
            weight_name = f"{naming.NBR_PREFIX}{i}{naming.WEIGHT_SUFFIX}"
            features[weight_name].float_list.value.append(weight)
            for name, value in parse(nbr_data).features.feature.items():
                features[prefix + name].CopyFrom(value)
        if self._want_kinds:
            self._kinds = _examples.merge_kinds(
                [self._kinds, _examples.feature_kinds(merged)])
        self._merged.inc()
        yield sort_key, merged.SerializeToString()

    def finish_bundle(self):
        if self._want_kinds and self._kinds:
            yield beam.pvalue.TaggedOutput(
                "kinds", beam.transforms.window.GlobalWindows.windowed_value(
                    self._kinds))
        self._kinds = None


class _MergeKindsFn(beam.CombineFn):
    """Unites `{feature: kind}` maps (the output Parquet columns)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, kinds):
        from neural_structured_learning.tools.beam import _examples  # pylint: disable=import-outside-toplevel
        return _examples.merge_kinds([accumulator, kinds])

    def merge_accumulators(self, accumulators):
        from neural_structured_learning.tools.beam import _examples  # pylint: disable=import-outside-toplevel
        return _examples.merge_kinds(accumulators)

    def extract_output(self, accumulator):
        return accumulator
