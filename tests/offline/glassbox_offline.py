"""How the smoke runs' notebook kernels are kept offline (used by tests/conftest.py and
tests/test_offline_guard.py, so the test tries the ways out exactly as a kernel has them).

Two layers:
- `NoNetwork`: a Linux network namespace that holds only a loopback interface (up). The test process
  enters it around each notebook run, so the kernel, the notebook client that talks to it over ZMQ on
  loopback TCP, and everything the kernel starts (Python or not: curl, bash's /dev/tcp, a C library)
  live in it; no packet can leave, whatever the code does. Making one needs CAP_SYS_ADMIN (root, as
  here and in CI); `NoNetwork.make()` returns None where the machine refuses.
- `guard_env(log)`: the variables that load tests/offline/sitecustomize.py into every Python started
  with them. It refuses and logs each attempt to reach a non-loopback address or look up a name, so a
  test can name the attempt; where no namespace exists it also refuses to start non-Python programs.

Entering a namespace switches only the calling thread (and what it starts from then on); the thread
switches back when the block ends."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _ok(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _this_thread_ns() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


class NoNetwork:
    """A network namespace with only loopback; `with ns.entered():` runs the block (and whatever it
    starts) inside it."""

    def __init__(self, fd: int):
        self.fd = fd
        self.inode = os.fstat(fd).st_ino

    @classmethod
    def make(cls) -> "NoNetwork | None":
        """A fresh namespace, or None where this machine does not allow one (not root, no CAP_SYS_ADMIN)."""
        home = _this_thread_ns()
        try:
            try:
                _ok(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            except OSError:
                return None
            try:
                fd = _this_thread_ns()
                _loopback_up()
            finally:
                _ok(_libc.setns(home, CLONE_NEWNET), "setns back to this machine's network")
        finally:
            os.close(home)
        return cls(fd)

    @contextlib.contextmanager
    def entered(self):
        home = _this_thread_ns()
        try:
            _ok(_libc.setns(self.fd, CLONE_NEWNET), "setns into the offline network namespace")
            try:
                yield self
            finally:
                _ok(_libc.setns(home, CLONE_NEWNET), "setns back to this machine's network")
        finally:
            os.close(home)

    def close(self) -> None:
        os.close(self.fd)


def guard_env(log: Path, ns: NoNetwork | None, pythonpath: str | None = None) -> dict[str, str]:
    """The environment variables that load the guard (logging to `log`) into every Python started with them;
    `ns` is the namespace those processes start in (None: none, so the guard refuses non-Python programs)."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD_DIR), pythonpath])),
           "GLASSBOX_OFFLINE_LOG": str(log)}
    if ns is not None:
        env["GLASSBOX_OFFLINE_NETNS"] = str(ns.inode)
    return env
