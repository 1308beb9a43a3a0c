"""Loaded by every Python process started with this folder on PYTHONPATH (the notebook kernels of the
test suite's smoke runs): when GLASSBOX_OFFLINE_LOG is set, any socket connection to an address
other than this machine's loopback is refused and written to that log, so a test can prove that no
notebook reaches the network (a notebook that swallowed the error still leaves its line in the log)."""
import os
import socket

_LOG = os.environ.get("GLASSBOX_OFFLINE_LOG")


def _local(address) -> bool:
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.")


def _guard(connect):
    def guarded(self, address, *args):
        if not _local(address):
            with open(_LOG, "a") as log:
                log.write(f"{os.getpid()} {address!r}\n")
            raise OSError(f"network access refused by the test suite's offline guard: {address!r}")
        return connect(self, address, *args)
    return guarded


if _LOG:
    socket.socket.connect = _guard(socket.socket.connect)
    socket.socket.connect_ex = _guard(socket.socket.connect_ex)
