"""Loaded by every Python process started with this folder on PYTHONPATH (the notebook kernels of the
test suite's smoke runs, and every Python they start, since children inherit PYTHONPATH): when
GLASSBOX_OFFLINE_LOG is set, any way out of this machine that Python offers is refused and written to
that log, so a test can prove that no notebook reaches the network (a notebook that swallowed the error
still leaves its line in the log).

Refused: connect, connect_ex, sendto and sendmsg to anything but loopback, for every address family
(AF_UNIX and AF_NETLINK stay local by construction), on `socket.socket` and on `_socket.socket` alike;
name lookups (getaddrinfo, gethostbyname(_ex), gethostbyaddr, getnameinfo) of anything but
"localhost" and literal loopback addresses. Loopback means the literal IPs 127.0.0.0/8 and ::1 and the
name "localhost": a host *name* such as "127.example.com" is not loopback.

This guard is the logger; the wall is the network namespace the smoke kernels run in (tests/offline/
glassbox_offline.py), which has only loopback, so nothing (a C library, ctypes, curl) can leave.
Outside that namespace (GLASSBOX_OFFLINE_NETNS unset where none could be made, or naming another one than
this process is in, e.g. a test's own subprocess after the smoke runs set the variables), every program
this guard would not be loaded into (not Python, or Python with -I, -E, -S or without the guard's
variables) is started by os.exec*, os.posix_spawn*, os.system and subprocess inside a network namespace
of its own, with no interface up (`unshare`), or refused where that cannot be done."""
import os

_LOG = os.environ.get("GLASSBOX_OFFLINE_LOG")


def _install() -> None:
    import _socket
    import ipaddress

    def loopback_host(host) -> bool:
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str):
            return False
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # a name, not a literal address: "127.example.com" resolves wherever DNS says

    def local_address(family, address) -> bool:
        if family == getattr(_socket, "AF_UNIX", None) or isinstance(address, (str, bytes)):
            return True  # a unix socket path (or abstract name)
        if family == getattr(_socket, "AF_NETLINK", None):
            return True  # talks to this machine's kernel only
        if family in (_socket.AF_INET, _socket.AF_INET6) and isinstance(address, tuple) and address:
            return loopback_host(address[0])
        return False  # AF_PACKET, AF_VSOCK, AF_BLUETOOTH, ...: refused

    def refuse(what: str, detail) -> OSError:
        try:
            with open(_LOG, "a") as log:
                log.write(f"{os.getpid()} {what} {detail!r}\n")
        except OSError:
            pass
        return PermissionError(f"network access refused by the test suite's offline guard: {what} {detail!r}")

    base = _socket.socket

    class socket(base):
        """`_socket.socket` with every way to send to an address checked first."""
        __slots__ = ()

        def connect(self, address):
            if not local_address(self.family, address):
                raise refuse("connect", address)
            return base.connect(self, address)

        def connect_ex(self, address):
            if not local_address(self.family, address):
                raise refuse("connect_ex", address)
            return base.connect_ex(self, address)

        def sendto(self, data, *args):
            address = args[-1] if args else None
            if not local_address(self.family, address):
                raise refuse("sendto", address)
            return base.sendto(self, data, *args)

        def sendmsg(self, buffers, *args, **kwargs):
            address = args[2] if len(args) > 2 else kwargs.get("address")
            if address is not None and not local_address(self.family, address):
                raise refuse("sendmsg", address)
            return base.sendmsg(self, buffers, *args, **kwargs)

    socket.__module__, socket.__qualname__ = base.__module__, base.__qualname__
    # socket.py subclasses `_socket.socket` when it is imported: replacing it here (before that, or
    # after and patching socket.socket too) guards both the C-level type and the Python one
    _socket.socket = _socket.SocketType = socket

    def lookup(name: str, check):
        real = getattr(_socket, name)

        def guarded(*args, **kwargs):
            if not check(*args, **kwargs):
                raise refuse(name, args)
            return real(*args, **kwargs)
        guarded.__name__ = guarded.__qualname__ = name
        setattr(_socket, name, guarded)
        return guarded

    guarded = {
        "getaddrinfo": lookup("getaddrinfo", lambda host=None, *a, **k: host is None or loopback_host(host)),
        "gethostbyname": lookup("gethostbyname", lambda host, *a: loopback_host(host)),
        "gethostbyname_ex": lookup("gethostbyname_ex", lambda host, *a: loopback_host(host)),
        "gethostbyaddr": lookup("gethostbyaddr", lambda host, *a: loopback_host(host)),
        "getnameinfo": lookup("getnameinfo", lambda sockaddr, *a: isinstance(sockaddr, tuple) and bool(sockaddr)
                              and loopback_host(sockaddr[0])),
    }
    import sys
    if "socket" in sys.modules:  # imported before us (by a .pth file): patch what it already holds
        module = sys.modules["socket"]
        for method in ("connect", "connect_ex", "sendto", "sendmsg"):
            setattr(module.socket, method, getattr(socket, method))
        for name, function in guarded.items():
            if name != "getaddrinfo":  # socket.getaddrinfo is Python and calls _socket.getaddrinfo
                setattr(module, name, function)

    try:  # inside the namespace the test suite made for the kernels?
        inside = os.stat("/proc/self/ns/net").st_ino == int(os.environ.get("GLASSBOX_OFFLINE_NETNS", ""))
    except (OSError, ValueError):
        inside = False
    if not inside:
        _guard_exec(refuse)


def _guard_exec(refuse) -> None:
    """No network namespace around us: what this guard would not be loaded into (a program that is not
    Python; Python with -I, -E or -S or without the guard's variables) starts in a network namespace of its
    own, with no interface up (`unshare --net`, or `unshare -rn` as an unprivileged user). It is refused
    where `unshare` is missing."""
    import re
    import shlex
    import shutil
    import sys

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    unshare = [shutil.which("unshare") or "", "--net", "--"] if os.geteuid() == 0 else \
        [shutil.which("unshare") or "", "--user", "--map-root-user", "--net", "--"]

    def python_with_guard(executable, argv, env) -> bool:
        if not executable or not re.fullmatch(r"python[0-9.]*", os.path.basename(os.path.realpath(executable))):
            return False
        for arg in argv[1:]:  # options before the script / -c / -m: -I, -E and -S skip this file
            if not arg.startswith("-") or arg in ("-c", "-m", "-"):
                break
            if not arg.startswith("--") and set(arg[1:].split("=")[0]) & set("IES"):
                return False
        env = os.environ if env is None else {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
        path = [os.path.realpath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        return env.get("GLASSBOX_OFFLINE_LOG") == _LOG and here in path

    def contained(what: str, executable, argv, env) -> tuple[str, list[str]]:
        """(executable, argv) to start instead: the same, or the same inside a namespace without network."""
        argv = [os.fsdecode(a) for a in (argv or [executable])]
        executable = os.fsdecode(executable) if executable is not None else argv[0]
        if os.sep not in executable:  # a bare name: the exec*p functions search PATH
            executable = shutil.which(executable) or executable
        if python_with_guard(executable, argv, env) or argv[:len(unshare)] == unshare:  # (already contained)
            return executable, argv
        if not unshare[0]:
            raise refuse(what, [executable, *argv[1:]])
        return unshare[0], [*unshare, executable, *argv[1:]]

    def wrap(name: str, with_env: bool):
        real = getattr(os, name, None)
        if real is None:
            return

        def guarded(path, argv, *rest, **kwargs):
            env = (rest[0] if rest else kwargs.get("env")) if with_env else None
            path, argv = contained(name, path, argv, env)
            return real(path, argv, *rest, **kwargs)
        guarded.__name__ = guarded.__qualname__ = name
        setattr(os, name, guarded)

    for name in ("execv", "execve", "posix_spawn"):
        wrap(name, with_env=name != "execv")
    for name, env_at in (("execvp", None), ("execvpe", 0), ("posix_spawnp", 0)):
        real_p = getattr(os, name, None)
        if real_p is not None:  # the PATH search is done here: call the non-p function with the found path
            def guarded_p(file, argv, *rest, _real=real_p, _name=name, _env_at=env_at, **kwargs):
                env = (rest[_env_at] if rest else kwargs.get("env")) if _env_at is not None else None
                path, argv = contained(_name, file, argv, env)
                return _real(path, argv, *rest, **kwargs)
            setattr(os, name, guarded_p)

    real_system = os.system

    def system(command):
        if not unshare[0]:
            raise refuse("system", command)
        return real_system(shlex.join([*unshare, "/bin/sh", "-c", os.fsdecode(command)]))
    os.system = system

    import _posixsubprocess
    real_fork_exec = _posixsubprocess.fork_exec

    def fork_exec(args, executable_list, *rest):
        env = rest[3]  # (close_fds, pass_fds, cwd, env, ...)
        found = [e for e in executable_list if os.access(e, os.X_OK)] or list(executable_list) or [None]
        path, argv = contained("subprocess", found[0], args, None if env is None else
                               dict(e.split(b"=", 1) for e in env if b"=" in e))
        if argv is not args and [os.fsdecode(a) for a in args] != argv:
            args, executable_list = argv, (os.fsencode(path),)
        return real_fork_exec(args, executable_list, *rest)
    _posixsubprocess.fork_exec = fork_exec
    if "subprocess" in sys.modules:
        sys.modules["subprocess"]._fork_exec = fork_exec


if _LOG:
    _install()
