#!/usr/bin/env python3
"""The seed's `analyze_interaction_data.py`: a thin wrapper of `genesys analyze`:
what Genesys has learned from its use.

Usage: python scripts/analyze_interaction_data.py [genesys analyze options]
"""

import sys

from genesys.cli import app

if __name__ == "__main__":
    sys.exit(app(["analyze", *sys.argv[1:]]))
