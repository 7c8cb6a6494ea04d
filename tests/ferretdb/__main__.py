"""`python3 -m tests.ferretdb build`: build the FerretDB binary into its cache, print its path."""

from __future__ import annotations

import sys

from . import FerretDBUnavailable, build

if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python3 -m tests.ferretdb build")
    try:
        print(build())
    except FerretDBUnavailable as error:
        sys.exit(f"ferretdb: {error}")
