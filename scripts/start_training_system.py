#!/usr/bin/env python3
"""The seed's `start_training_system.py`: a thin wrapper of `genesys serve`.

Usage: python scripts/start_training_system.py [genesys serve options]
"""

import sys

from genesys.cli import app

if __name__ == "__main__":
    sys.exit(app(["serve", *sys.argv[1:]]))
