"""Every setting a person can pass by name: one table shared by the CLIs, notebooks and platforms.

An `Option` ties a config key (`train.epochs`) to its command-line flag (`--epochs`) and its
notebook parameter / Databricks widget (`epochs`). The jobs add their flags from this table
(`lakerec.cli.add_options`), the notebooks map their parameters through it, and a config
error names both spellings (`--epochs or train.epochs must be ...`). A setting without an
option is still reachable everywhere with `--set KEY=VALUE` (repeatable), e.g.
`--set train.temperature=0.5 --set train.hidden_units=[128,64]`.

The types, defaults and allowed values are not repeated here: they come from the config
dataclasses (`lakerec.config`), which validate every value once, on load.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """A named setting.

    Attributes:
        key: the config key, `section.name` or a top-level name (`lake`).
        help: one line for --help.
        metavar: the value's placeholder in --help.
    """

    key: str
    help: str
    metavar: str | None = None
    # The name where the key's last part is taken by another section's option
    # (rank.epochs -> rank_epochs, --rank-epochs).
    alias: str | None = None

    @property
    def name(self) -> str:
        """The notebook parameter and argparse destination: the key's last part (`epochs`), or the alias."""
        return self.alias or self.key.rsplit(".", 1)[-1]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("lake", "lake root: tables, metastore, MLflow store (overrides the config)", "DIR"),
    Option("database", "database (schema) of the tables, e.g. aliccp or, on Unity Catalog, catalog.schema"),
    Option("raw", "folder (or abfss:// URL) of the raw Ali-CCP files", "DIR"),
    Option("allow_incomplete", "read tables whose writing job's last run did not finish (see lakerec/lake_runs.py)"),
    Option("ingest.force", "replace the tables even if the input looks wrong (empty, mostly quarantined, far "
                           "fewer rows than the split holds)"),
    Option("mlflow.experiment", "MLflow experiment"),
    Option("mlflow.registered_model", "model registry name, e.g. on Unity Catalog catalog.schema.model"),
    Option("filter.min_item_count", "keep items with at least N train impressions", "N"),
    Option("filter.min_user_count", "then keep users with at least M impressions among the kept items", "M"),
    Option("filter.label", "which label makes a positive"),
    Option("filter.kcore", "repeat both filters until nothing changes"),
    Option("train.epochs", "training epochs", "E"),
    Option("train.batch_size", "global batch size", "B"),
    Option("train.embedding_dim", "embedding dimension of both towers", "D"),
    Option("train.learning_rate", "optimizer learning rate", "LR"),
    Option("train.features", "ids: id embeddings only; all: plus user and item features"),
    Option("train.temperature", "softmax temperature of the in-batch loss", "T"),
    Option("train.item_bias", "learn a per-item bias added to the score (popularity-aware; exported as one "
                              "more embedding dimension)"),
    Option("train.popularity_prior", "add BETA * log(item's share of train clicks) to the score at scoring time",
           "BETA"),
    Option("train.validation_fraction", "share of train positives held out as the validation slice (0 = off; "
                                        "a user's only positive stays in train)", "F"),
    Option("train.early_stopping_patience", "stop after N epochs without a better validation metric, keep the best "
                                            "epoch's weights (0 = never stop early)", "N"),
    Option("train.validation_metric", "what early stopping and the sweep maximise, at K = max(train.ks)"),
    Option("sweep.max_trials", "at most N trials", "N"),
    Option("sweep.out", "where the sweep writes the best settings as a config file", "PATH"),
    Option("train.workers", "training processes: 1 = in the driver; N > 1 = N Spark barrier tasks, "
                            "each reading one shard, batch size / N rows per worker step", "N"),
    Option("train.gpu", "with --workers N: one GPU per worker (needs Spark GPU scheduling, "
                        "spark.task.resource.gpu.amount=1)"),
    Option("train.petastorm_cache", "where Petastorm materialises the training rows; with workers on several "
                                    "machines, storage they all read, e.g. file:///dbfs/tmp/lakerec/petastorm_cache",
           "URL"),
    Option("evaluate.exclude_seen", "drop each user's training items from their ranking and recommendations "
                                    "(default: on for MovieLens tables, off for Ali-CCP)"),
    Option("evaluate.als", "the Spark ALS baseline in the evaluation table (--no-als: skip it)"),
    Option("mlflow.registered_ranker", "model registry name of the ranking model"),
    Option("mlflow.model_version", "the version of mlflow.registered_model to load (default: its champion alias)",
           "N"),
    Option("mlflow.ranker_version", "the version of mlflow.registered_ranker to load (default: its champion alias)",
           "N"),
    Option("rank.objective", "ctr: one click head; esmm: click and conversion heads over every impression (ESMM)"),
    Option("rank.epochs", "ranker training epochs (at most: early stopping may end sooner)", "E", alias="rank_epochs"),
    Option("rank.batch_size", "ranker batch size", "B", alias="rank_batch_size"),
    Option("rank.embedding_dim", "embedding dimension of every ranker field", "D", alias="rank_embedding_dim"),
    Option("rank.learning_rate", "ranker optimizer learning rate", "LR", alias="rank_learning_rate"),
    Option("rank.cross_layers", "DCN-v2 cross layers beside the deep MLP (0: deep part only)", "N"),
    Option("rank.position_bias", "learn a shallow position tower added to the CTR logit in training (never at "
                                 "scoring)"),
    Option("rank.cross_dropout", "share of training rows whose cross fields are blanked, as on a retrieved "
           "candidate (1 = never use them)", "F"),
    Option("rank.validation_fraction", "share of train_impressions held out for early stopping (0 = off)", "F",
           alias="rank_validation_fraction"),
    Option("rank.early_stopping_patience", "stop after N epochs without a better validation AUC (0 = never)", "N",
           alias="rank_early_stopping_patience"),
    Option("rank.workers", "ranker training processes: 1 = in the driver, N > 1 = N Spark barrier tasks "
                           "(as --workers)", "N", alias="rank_workers"),
    Option("rank.gpu", "with --rank-workers N: one GPU per worker (as --gpu)", alias="rank_gpu"),
    Option("rank.candidates", "two-stage run: items retrieved per user by the two-tower, then re-ranked", "N"),
    Option("rank.rerank_by", "two-stage run: the ranker's score that re-ranks the candidates"),
    Option("rank.logistic_regression", "the Spark MLlib logistic-regression baseline in the ranking table "
                                       "(--no-logistic-regression: skip it)"),
    Option("rank.rerank_recommendations", "re-rank the recommendations with the champion ranker, if any "
                                          "(--no-rerank-recommendations: the two-tower's order)"),
    Option("mlflow.registered_recommender", "model registry name of the recommender the service answers with"),
    Option("serve.index", "the recommender's retrieval index: exact (every item) or hnsw (approximate, FAISS)"),
    Option("serve.host", "address the server listens on (default loopback)", "HOST"),
    Option("serve.port", "port the server listens on", "PORT"),
    Option("serve.workers", "server processes", "N", alias="serve_workers"),
    Option("sql_server.host", "address the SQL endpoint listens on (default loopback)", "HOST", alias="sql_host"),
    Option("sql_server.port", "port of the SQL endpoint (Thrift JDBC/ODBC)", "PORT", alias="sql_port"),
    Option("rank.two_stage", "also run retrieval + re-ranking after the ranking table (--no-two-stage: skip it)"),
)

BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
assert len(BY_NAME) == len(OPTIONS), "two options share a flag name"

# Options every job takes (the rest are added by the jobs that use them).
COMMON = ("lake", "database", "allow_incomplete", "mlflow.experiment", "mlflow.registered_model")


def describe(key: str) -> str:
    """How a person names a key: `--epochs or train.epochs`, or just the key without a flag."""
    option = BY_KEY.get(key)
    return f"{option.flag} or {key}" if option else key
