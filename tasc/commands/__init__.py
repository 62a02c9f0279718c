"""CLI subcommands, one module each; see `tasc.cli`."""
