"""Command-line jobs: `python -m jobs.<name> --help`. Each is a thin main() over lakerec."""
