"""`python -m ipbx.store.upgrade`: the schema migrations, for `Database.migrate`, which
runs them in a process of their own so that a server never keeps Alembic loaded. The
database URL comes on standard input, so that a password never shows in the process
list."""

import sys

from ipbx.store.database import Database


def main() -> None:
    database = Database(sys.stdin.read())
    try:
        database.upgrade()
    finally:
        database.close()


if __name__ == "__main__":
    main()
