"""Entry point for `python -m tasc`."""

from tasc.cli import main

raise SystemExit(main())
