"""Errors a user can cause. Each one carries a message that says what to do."""


class LakeRecError(Exception):
    """Base class: the CLI prints the message alone (no traceback) and exits 2."""


class ConfigError(LakeRecError):
    """A configuration file or flag is wrong."""


class SetupError(LakeRecError):
    """The machine lacks something (Java, Delta jars) that set-up should have provided."""


class MissingTableError(LakeRecError):
    """An upstream table does not exist yet: run the job that writes it first."""

    def __init__(self, table: str, job: str):
        super().__init__(f"table {table} does not exist yet: run `python -m lakerec.jobs.{job}` first")
        self.table = table
        self.job = job


class IncompleteRunError(LakeRecError):
    """A job's input tables are not one complete run of the job that writes them (lakerec.lake_runs)."""


class InputDataError(LakeRecError):
    """Raw input is missing or unusable as a whole (not a single bad line: those are quarantined)."""


class RequestError(LakeRecError):
    """A request to the recommender (lakerec.serving) is malformed: the service answers 400 with this message."""


class OutdatedLakeError(LakeRecError):
    """The lake was written by an older LakeRec, in a layout this one cannot replace one split at a time."""


class SuspiciousInputError(InputDataError):
    """Raw input that would replace good tables with bad ones (empty, compressed, mostly quarantined): --force overrides."""
