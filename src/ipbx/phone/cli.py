"""`ipbx phone`: arguments and entry point (the user agent lives in ipbx.phone.ua)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="PBX address, host:port")


async def run(args: argparse.Namespace) -> int:
    print("ipbx phone: not built yet")
    return 1
