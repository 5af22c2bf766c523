#!/usr/bin/env python3
"""The seed's `monitor_training.py`: a thin wrapper of `genesys monitor`:
follow the current training run.

Usage: python scripts/monitor_training.py [genesys monitor options]
"""

import sys

from genesys.cli import app

if __name__ == "__main__":
    sys.exit(app(["monitor", *sys.argv[1:]]))
