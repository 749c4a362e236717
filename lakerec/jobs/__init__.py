"""Command-line jobs: `python -m lakerec.jobs.<name> --help` (or the `lakerec-<name>` scripts).

Each is a thin main(): it parses flags (lakerec.cli, the option table of lakerec.options),
builds the config and calls the stage's library `run(...)`, which notebooks and tests call too.
"""
