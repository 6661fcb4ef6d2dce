"""nftables commands run in this process, through libnftables (the library the `nft`
program is built on, Debian package nftables), by ctypes: a command takes about a
tenth of a millisecond, where running `nft` takes a process start.

The functions are those of libnftables(3): a context, its output and errors kept in
buffers, and `nft_run_cmd_from_buffer`, which runs commands in nft's own syntax, several
in one buffer as one transaction. The output is nft's text (its JSON output leaves out
`get element`, in nftables 1.0.6).
"""

from __future__ import annotations

import ctypes
import ctypes.util

LIBRARY = "libnftables.so.1"
PACKAGE = "nftables"


class NftablesError(RuntimeError):
    """The library is missing, or refused a command: the message is its own."""


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("nftables") or LIBRARY
    try:
        library = ctypes.CDLL(name)
    except OSError as exc:
        raise NftablesError(f"{LIBRARY} is not installed (Debian package {PACKAGE})") from exc
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.restype = None
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(library, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(library, name).restype = ctypes.c_char_p
        getattr(library, name).argtypes = [ctypes.c_void_p]
    library.nft_run_cmd_from_buffer.restype = ctypes.c_int
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return library


class Nftables:
    """One libnftables context."""

    def __init__(self) -> None:
        self._library = _load()
        self._context = ctypes.c_void_p(self._library.nft_ctx_new(0))
        self._library.nft_ctx_buffer_output(self._context)
        self._library.nft_ctx_buffer_error(self._context)

    def run(self, commands: str) -> str:
        """Run `commands` (nft syntax, one per line) as one transaction; what they print."""
        code = self._library.nft_run_cmd_from_buffer(self._context, commands.encode())
        output = (self._library.nft_ctx_get_output_buffer(self._context) or b"").decode()
        if code != 0:
            error = (self._library.nft_ctx_get_error_buffer(self._context) or b"").decode()
            raise NftablesError(error.strip() or f"nftables refused: {commands}")
        return output

    def close(self) -> None:
        if self._context:
            self._library.nft_ctx_free(self._context)
            self._context = ctypes.c_void_p()
