"""Which columns the ranker reads, and how big each vocabulary is.

The ranker reads every field the field registry tags ID, SIDE or RANK
(lakerec.schema.fields), as the impressions tables hold them: a single-valued field is its
vocabulary index (plus `<name>_weight` when its VALUE is a weight: the cross fields), a
multi-valued one its fixed-length ids/weights pair. A new field tagged there reaches the
ranker without an edit here.

Context fields (position) are training-only inputs: at scoring time the impression has not
happened yet, so scoring never reads them (RankSpec.columns leaves them out).

`RankSpec` is the one description of the inputs: the model is built from it, the feed
selects its columns, and the exported model stores it (as JSON) so that scoring code knows
what to pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from lakerec.errors import InputDataError
from lakerec.schema import fields as F
from lakerec.schema import tables as T

LABELS = ("click", "conversion")  # the impressions tables' label columns, 0 or 1


def ranker_fields() -> tuple[F.Field, ...]:
    """Every field the ranker reads: the two ids, the side features (query, candidate), the rank fields."""
    return F.select(feature=F.ID) + F.side_features() + F.rank_features()


def is_training_only(f: F.Field) -> bool:
    """A context field (position): known when the model learns from an impression, not when it scores one."""
    return f.role == F.CONTEXT


def position_field() -> F.Field:
    """The one training-only field the position tower reads."""
    (f,) = [f for f in ranker_fields() if is_training_only(f)]
    return f


def field_columns(f: F.Field) -> tuple[str, ...]:
    """The impressions columns that hold one field."""
    if f.multi:
        return f.ids_column, f.weights_column
    return (f.index_column,) + ((f.weight_column,) if f.weight_column else ())


def cross_columns() -> tuple[str, ...]:
    """The impressions columns of the cross fields (user history x impressed item), absent on a pair never shown."""
    return tuple(c for f in ranker_fields() if f.role == F.CROSS for c in field_columns(f))


@dataclass(frozen=True)
class RankSpec:
    """The ranker's inputs.

    Attributes:
        vocab_sizes: embedding rows per field name (max index + 1; row 0 = missing / OOV).
        lengths: the fixed length of every array column.
    """

    vocab_sizes: dict[str, int]
    lengths: dict[str, int] = field(default_factory=dict)

    def fields(self, training: bool = False) -> tuple[F.Field, ...]:
        """The fields scoring reads (training=True: also the training-only ones)."""
        return tuple(f for f in ranker_fields() if training or not is_training_only(f))

    @property
    def columns(self) -> tuple[str, ...]:
        """What scoring reads (no position)."""
        return tuple(c for f in self.fields() for c in field_columns(f))

    @property
    def training_columns(self) -> tuple[str, ...]:
        """What training reads: the scoring columns, the training-only ones and the labels."""
        return tuple(c for f in self.fields(training=True) for c in field_columns(f)) + LABELS

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RankSpec":
        return cls(**json.loads(text))


def measure_spec(spark, tables: dict) -> tuple[RankSpec, dict[str, int]]:
    """Vocabulary sizes and array lengths from the vocabularies and train_impressions, in one Spark query.

    A size is max(index) + 1 over the vocabulary table (user_vocab, item_vocab, or
    feature_vocab's rows for the field) and the impressions column, so no index can fall
    outside its embedding table.

    Args:
        spark: the session.
        tables: DataFrames keyed by user_vocab, item_vocab, feature_vocab and train_impressions.

    Returns:
        (the RankSpec, counts: rows, clicks, conversions, conversions_without_click of train_impressions).

    Raises:
        InputDataError: a label is null or not 0/1, or an array column has no single fixed length.
    """
    from pyspark.sql import functions as Fn

    impressions = tables[T.TRAIN_IMPRESSIONS.name]
    aggs = [Fn.count(Fn.lit(1)).alias("rows")]
    for label in LABELS:
        aggs += [Fn.sum(label).alias(f"sum:{label}"), Fn.count(label).alias(f"nonnull:{label}"),
                 Fn.min(label).alias(f"min:{label}"), Fn.max(label).alias(f"max:{label}")]
    aggs.append(Fn.sum(((Fn.col(LABELS[1]) == 1) & (Fn.col(LABELS[0]) == 0)).cast("int")).alias("conv_no_click"))
    for f in ranker_fields():
        if f.multi:
            aggs.append(Fn.max(Fn.array_max(f.ids_column)).alias(f"max:{f.name}"))
            for col in (f.ids_column, f.weights_column):
                aggs += [Fn.min(Fn.size(col)).alias(f"minlen:{col}"), Fn.max(Fn.size(col)).alias(f"maxlen:{col}")]
        else:
            aggs.append(Fn.max(f.index_column).alias(f"max:{f.name}"))
    user_id, item_id = F.select(feature=F.ID)
    parts = [
        impressions.agg(*aggs),
        tables[T.USER_VOCAB.name].agg(Fn.max(user_id.index_column).alias(f"vocab:{user_id.name}")),
        tables[T.ITEM_VOCAB.name].agg(Fn.max(item_id.index_column).alias(f"vocab:{item_id.name}")),
        tables[T.FEATURE_VOCAB.name].groupBy("feature").agg(Fn.max("index").alias("m"))
        .agg(Fn.map_from_entries(Fn.collect_list(Fn.struct("feature", "m"))).alias("vocab_max")),
    ]
    row = parts[0]
    for p in parts[1:]:
        row = row.crossJoin(p)
    data = row.first().asDict()
    where = T.TRAIN_IMPRESSIONS.name
    for label in LABELS:
        if data[f"nonnull:{label}"] != data["rows"] or (data["rows"] and not (
                data[f"min:{label}"] >= 0 and data[f"max:{label}"] <= 1)):
            raise InputDataError(
                f"{where}.{label} must be 0 or 1 on every row (found nulls or values "
                f"{data[f'min:{label}']}..{data[f'max:{label}']}); rerun `python -m lakerec.jobs.{T.IMPRESSIONS}`")
    vocab_max = {k: int(v or 0) for k, v in (data["vocab_max"] or {}).items()}
    sizes, array_lengths = {}, {}
    for f in ranker_fields():
        top = max(vocab_max.get(f.name, 0), data.get(f"vocab:{f.name}") or 0, data.get(f"max:{f.name}") or 0)
        sizes[f.name] = int(top) + 1
        if f.multi:
            for col in (f.ids_column, f.weights_column):
                lo, hi = data[f"minlen:{col}"], data[f"maxlen:{col}"]
                if lo is not None and lo != hi:
                    raise InputDataError(
                        f"{where}.{col} must have one fixed length (found {lo}..{hi}); rerun "
                        f"`python -m lakerec.jobs.{T.IMPRESSIONS}`, which pads the arrays")
                array_lengths[col] = int(hi or 0)
    counts = {"rows": int(data["rows"]), "clicks": int(data[f"sum:{LABELS[0]}"] or 0),
              "conversions": int(data[f"sum:{LABELS[1]}"] or 0), "conversions_without_click": int(data["conv_no_click"] or 0)}
    return RankSpec(sizes, array_lengths), counts
