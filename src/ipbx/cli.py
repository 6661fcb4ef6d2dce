"""The `ipbx` command: `serve` runs the PBX, `phone` is a SIP user agent, `trunks` and
`calls` show the trunks' state and the latest call records, `token create|list|revoke`
manage API tokens, `user create|list|delete` the web administration's users."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ipbx.config import Config, load_config
from ipbx.configfile import ConfigError

if TYPE_CHECKING:
    from ipbx.store import Store


def _run(coro_factory: object) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; this is a safety net
        pass
    asyncio.run(coro_factory)  # type: ignore[arg-type]


def _config(args: argparse.Namespace, path: Path | None = None) -> Config | None:
    """The --config file (or `path`, or the embedded default); None, said on stderr, if
    it is bad."""
    try:
        return load_config(path or args.config)
    except ConfigError as exc:
        print(f"ipbx: {exc}", file=sys.stderr)
        return None


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    """The configuration's database, migrated, closed after use."""
    from ipbx.store import Store

    store = Store(config.store_url)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


async def _serve(args: argparse.Namespace) -> int:
    from ipbx.serve import serve

    config = _config(args)
    if config is None:
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per webhook delivery and CRM lookup.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
    log = logging.getLogger("ipbx")
    if args.config is None:
        accounts = config.data_dir / "demo-accounts.yaml"
        log.info("no --config: demo tenant, passwords in %s", accounts)
    from ipbx.pbx.prerequisites import missing

    for problem in missing(config, args.config):
        log.warning("%s", problem)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from ipbx.pbx.provisioning import ProvisioningError

    try:
        await serve(config, stop)
    except ProvisioningError as exc:
        print(f"ipbx: the database's provisioned items: {exc}", file=sys.stderr)
        return 2
    return 0


def _trunks(args: argparse.Namespace) -> int:
    """What the running server last wrote to DATA_DIR/trunks.json (docs/trunks.md)."""
    from ipbx.pbx.trunks import STATE_FILE, format_state

    config = _config(args)
    if config is None:
        return 2
    if args.json:
        try:
            print((config.data_dir / STATE_FILE).read_text(encoding="utf-8"), end="")
        except OSError as exc:
            print(f"ipbx: {exc}", file=sys.stderr)
            return 1
        return 0
    status, text = format_state(config.data_dir)
    print(text)
    return status


def _apply(args: argparse.Namespace) -> int:
    """Check a configuration file and write its provisioning to the database: the items
    of its lists (extensions, trunks, numbers, routes, groups, menus, schedules,
    announcements, blacklist, webhooks), as the API would. A running server
    takes them up within seconds. Idempotent; it never deletes anything (the API does)."""
    from ipbx.pbx import provisioning

    config = _config(args, args.file)
    if config is None:
        return 2
    with _store(config) as store:
        try:
            added, changed, _ = provisioning.apply(store, config)
        except provisioning.ProvisioningError as exc:
            print(f"ipbx: {args.file}: {exc}", file=sys.stderr)
            return 2
    items = sum(len(getattr(config, name)) for name in provisioning.KINDS)
    print(f"{args.file}: {items} item(s); added {_keys(added)}, changed {_keys(changed)}")
    return 0


def _keys(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"{kind}/{key}" for kind, key in items) or "none"


def _calls(args: argparse.Namespace) -> int:
    """The latest call records from the store, newest first (a line each, or JSON)."""
    import dataclasses
    import json
    import time

    config = _config(args)
    if config is None:
        return 2
    with _store(config) as store:
        records = store.call_records(limit=args.limit)
    for record in records:
        if args.json:
            print(json.dumps(dataclasses.asdict(record)))
            continue
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started))
        talked = record.ended - record.answered if record.answered is not None else 0.0
        legs = "; ".join(
            f"{leg.role} {leg.codec} loss {leg.loss_percent:.1f}% jitter {leg.jitter_ms:.0f} ms"
            + (f" MOS {leg.mos:.2f}" if leg.mos is not None else "")
            for leg in record.legs
        )
        extra = f" digits {record.digits}" if record.digits else ""
        extra += f" recording {record.recording}" if record.recording else ""
        print(
            f"{started} {record.caller} -> {record.callee} {record.result} "
            f"{talked:.0f} s [{legs}]{extra}"
        )
    return 0


def _token(args: argparse.Namespace) -> int:
    """`token create`: a new API token, printed once (only its hash is stored);
    `token list`: key id, tenant, scope, created, name of each (never a secret);
    `token revoke KEY_ID`: delete it, so the server refuses it from the next request."""
    import time

    from ipbx.api.tokens import create_token

    config = _config(args)
    if config is None:
        return 2
    with _store(config) as store:
        if args.token_command == "list":
            for record in store.api_tokens(args.tenant):
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
                print(f"{record.key_id}  {record.tenant}  {record.scope:<5}  {created}  "
                      f"{record.name}".rstrip())  # fmt: skip
            return 0
        if args.token_command == "revoke":
            if not store.delete_api_token(args.key_id):
                print(f"ipbx: key_id: no API token {args.key_id}", file=sys.stderr)
                return 1
            print(f"ipbx: token {args.key_id} revoked", file=sys.stderr)
            return 0
        token, record = create_token(store, args.scope, args.tenant, args.name)
    print(token)
    print(
        f"ipbx: {record.scope} token {record.key_id} for tenant {record.tenant}; "
        "it is not shown again",
        file=sys.stderr,
    )
    return 0


def _user(args: argparse.Namespace) -> int:
    """`user create NAME`: a web administration user (or a new password, role or tenant
    for one), the password read from the terminal twice, or as the first line of stdin;
    `user list`: name, tenant, role and lock-out of each; `user delete NAME`."""
    import time

    from ipbx.web.accounts import create_user

    config = _config(args)
    if config is None:
        return 2
    with _store(config) as store:
        if args.user_command == "list":
            for user in store.admin_users(args.tenant):
                locked = user.locked_until is not None and user.locked_until > time.time()
                print(f"{user.name}  {user.tenant}  {user.role}" + ("  locked" if locked else ""))
            return 0
        if args.user_command == "delete":
            if not store.delete_admin_user(args.name):
                print(f"ipbx: name: no user {args.name}", file=sys.stderr)
                return 1
            print(f"ipbx: user {args.name} deleted", file=sys.stderr)
            return 0
        password = _new_password()
        if password is None:
            return 1
        try:
            new = create_user(store, args.name, password, args.role, args.tenant)
        except ValueError as exc:
            print(f"ipbx: {exc}", file=sys.stderr)
            return 2
    done = "created" if new else "updated"
    print(f"ipbx: {args.role} {args.name} of tenant {args.tenant} {done}", file=sys.stderr)
    return 0


def _new_password() -> str | None:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        print("ipbx: the passwords differ", file=sys.stderr)
        return None
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ipbx", description="SIP server and IP-PBX")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the PBX")
    serve.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    trunks = sub.add_parser("trunks", help="show the trunks' registration and health")
    trunks.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    trunks.add_argument("--json", action="store_true", help="print the state file as JSON")
    apply = sub.add_parser("apply", help="check a configuration and write its provisioning")
    apply.add_argument("file", type=Path, help="YAML configuration file")
    calls = sub.add_parser("calls", help="list the latest call records")
    calls.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    calls.add_argument("--limit", type=int, default=20, help="how many calls (newest first)")
    calls.add_argument("--json", action="store_true", help="one JSON object per call")
    token = sub.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    create = token.add_parser("create", help="make a token and print it (once)")
    create.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    create.add_argument("--scope", choices=["read", "admin"], required=True)
    create.add_argument("--tenant", default="default", help="whose data it sees")
    create.add_argument("--name", default="", help="a note: who or what uses it")
    listing = token.add_parser("list", help="the tokens: key id, tenant, scope, created, name")
    listing.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    listing.add_argument("--tenant", default=None, help="only this tenant's (default: all)")
    revoke = token.add_parser("revoke", help="delete a token: refused from the next request")
    revoke.add_argument("key_id", help="the token's key id (`ipbx_<key id>_...`)")
    revoke.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    user = sub.add_parser("user", help="web administration users").add_subparsers(
        dest="user_command", required=True
    )
    make = user.add_parser("create", help="add a user, or set its password, role, tenant")
    make.add_argument("name", help="what the user signs in with")
    make.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    make.add_argument("--role", choices=["admin", "supervisor"], required=True,
                      help="supervisor: reads everything, changes nothing")  # fmt: skip
    make.add_argument("--tenant", default="default", help="whose configuration it manages")
    users = user.add_parser("list", help="the users: name, tenant, role, lock-out")
    users.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    users.add_argument("--tenant", default=None, help="only this tenant's (default: all)")
    remove = user.add_parser("delete", help="remove a user and sign its sessions out")
    remove.add_argument("name")
    remove.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    from ipbx.phone.cli import add_arguments

    add_arguments(sub.add_parser("phone", help="a SIP phone on the command line"))
    args = parser.parse_args(argv)
    if args.command == "trunks":
        return _trunks(args)
    if args.command == "calls":
        return _calls(args)
    if args.command == "apply":
        return _apply(args)
    if args.command == "token":
        return _token(args)
    if args.command == "user":
        return _user(args)
    result: list[int] = []

    async def runner() -> None:
        if args.command == "serve":
            result.append(await _serve(args))
        else:
            from ipbx.phone.cli import run

            result.append(await run(args))

    _run(runner())
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(main())
