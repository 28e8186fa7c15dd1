#!/usr/bin/env python
"""fastenc command line. ``python cli.py run-all`` runs the whole study (the demo by default)."""
import sys

from fastenc.cli import main

if __name__ == "__main__":
    sys.exit(main())
