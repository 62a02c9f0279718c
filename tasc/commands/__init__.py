"""CLI subcommands, one module each (see `tasc.cli`); `options` holds the options and helpers they share."""
