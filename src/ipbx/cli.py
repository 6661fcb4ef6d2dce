"""ipbx command line."""
import sys


def main() -> int:
    print("ipbx: not built yet", file=sys.stderr)
    return 1
