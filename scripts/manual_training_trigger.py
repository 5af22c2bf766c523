#!/usr/bin/env python3
"""The seed's `manual_training_trigger.py`: a thin wrapper of `genesys train`:
curate if needed, train, validate.

Usage: python scripts/manual_training_trigger.py [genesys train options]
"""

import sys

from genesys.cli import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]]))
