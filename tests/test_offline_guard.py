"""The smoke runs' kernels cannot reach the network: every way out is tried from a Python started exactly
as smoke_run starts a kernel (inside the `no_network` namespace, with `glassbox_offline.guard_env`), and
each must fail, Python's ways refused and logged by the guard; loopback, which the kernel needs, works.

Only reserved addresses are tried (192.0.2.1 is TEST-NET-1, 2001:db8:: the IPv6 documentation prefix,
.invalid names never resolve), so even a broken guard sends nothing anywhere real. The last test covers
machines where no namespace can be made: there the guard starts what it cannot see under `unshare`."""
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import glassbox_offline

# Each attempt is run in the guarded Python; the outcome is "refused" (the guard's PermissionError),
# "ok", or the error's name and message.
ATTEMPTS = r'''
import _socket, ctypes, json, os, socket, subprocess, sys, urllib.request

OUT = "192.0.2.1"
PYTHON_CONNECT = "import socket; socket.socket().connect(('192.0.2.1', 80))"

def raw_c_connect():  # libc's connect() through ctypes: no Python socket method is involved
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    addr = bytes([2, 0, 0, 80, 192, 0, 2, 1]) + bytes(8)  # sockaddr_in 192.0.2.1:80
    rc = libc.connect(fd, addr, len(addr))
    err = ctypes.get_errno()
    os.close(fd)
    if rc != 0:
        raise OSError(err, os.strerror(err))

def run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kwargs)
    if done.returncode:
        raise OSError(done.returncode, (done.stderr or done.stdout).strip().splitlines()[-1])

def udp_sendmsg():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendmsg([b"x"], [], 0, (OUT, 53))

def packet_sendto():
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    except PermissionError:
        raise RuntimeError("unavailable: packet sockets need root") from None
    with s:
        s.sendto(bytes(14) + b"x", ("lo", 0x88B5))  # a local experimental ethertype, on loopback at most

def os_system():
    status = os.system("bash -c 'exec 3<>/dev/tcp/192.0.2.1/80'")
    if status:
        raise OSError(status, "os.system: the command failed (its error is on stderr)")

BASH_TCP = ["/usr/bin/bash", "-c", "exec 3<>/dev/tcp/192.0.2.1/80"]

def exited(status, what):
    if status == 99 << 8:
        raise PermissionError(f"{what}: refused by the offline guard in the child")
    if status:
        raise OSError(status, f"{what}: the command failed (its error is on stderr)")

def os_posix_spawn():
    pid = os.posix_spawn(BASH_TCP[0], BASH_TCP, os.environ)
    exited(os.waitpid(pid, 0)[1], "os.posix_spawn")

def os_execv():  # in a fork, so that a guard that let it through would not replace this process
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(BASH_TCP[0], BASH_TCP)
        except PermissionError as err:
            os._exit(99 if "offline guard" in str(err) else 98)
        os._exit(98)
    exited(os.waitpid(pid, 0)[1], "os.execv")

OUT_ATTEMPTS = {
    "tcp connect": lambda: socket.socket().connect((OUT, 80)),
    "tcp connect_ex": lambda: socket.socket().connect_ex((OUT, 80)),
    "udp sendto": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (OUT, 53)),
    "udp sendmsg": udp_sendmsg,
    "udp connect": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect((OUT, 53)),
    "ipv6 connect": lambda: socket.socket(socket.AF_INET6).connect(("2001:db8::1", 80)),
    "packet sendto": packet_sendto,
    "_socket connect": lambda: _socket.socket().connect((OUT, 80)),
    "_socket udp sendto": lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM).sendto(b"x", (OUT, 53)),
    "create_connection": lambda: socket.create_connection((OUT, 80), timeout=2),
    "urlopen": lambda: urllib.request.urlopen("http://example.invalid/", timeout=2),
    "getaddrinfo": lambda: socket.getaddrinfo("example.invalid", 80),
    "_socket getaddrinfo": lambda: _socket.getaddrinfo("example.invalid", 80),
    "gethostbyname": lambda: socket.gethostbyname("example.invalid"),
    "gethostbyname_ex": lambda: socket.gethostbyname_ex("example.invalid"),
    "gethostbyaddr": lambda: socket.gethostbyaddr(OUT),
    "getnameinfo": lambda: socket.getnameinfo((OUT, 80), 0),
    "connect to a name starting 127.": lambda: socket.socket().connect(("127.0.0.1.example.invalid", 80)),
    "getaddrinfo of a name starting 127.": lambda: socket.getaddrinfo("127.example.invalid", 80),
    "python subprocess": lambda: run([sys.executable, "-c", PYTHON_CONNECT]),
    "python -I subprocess (skips the guard)": lambda: run([sys.executable, "-I", "-c", PYTHON_CONNECT]),
    "python subprocess, guard cleared from env": lambda: run([sys.executable, "-c", PYTHON_CONNECT], env={}),
    "bash /dev/tcp": lambda: run(["bash", "-c", "exec 3<>/dev/tcp/192.0.2.1/80"]),
    "curl": lambda: run(["curl", "-sS", "--max-time", "5", "http://192.0.2.1/"]),
    "os.system": os_system,
    "os.posix_spawn": os_posix_spawn,
    "os.execv": os_execv,
    "ctypes libc connect": raw_c_connect,
}

def loopback(family, host):
    with socket.create_server((host, 0), family=family) as server:
        port = server.getsockname()[1]
        with socket.create_connection((host, port), timeout=5) as c:
            c.sendall(b"ping")
            conn, _ = server.accept()
            assert conn.recv(4) == b"ping"
            conn.close()
    return "ok"

def udp_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        r.bind(("127.0.0.1", 0))
        s.sendto(b"ping", r.getsockname())
        assert r.recv(4) == b"ping"

def localhost_by_name():
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(("localhost", server.getsockname()[1]), timeout=5).close()

def unix_pair():
    a, b = socket.socketpair()
    with a, b:
        a.send(b"ping")
        assert b.recv(4) == b"ping"

LOOPBACK_ATTEMPTS = {
    "tcp 127.0.0.1": lambda: loopback(socket.AF_INET, "127.0.0.1"),
    "tcp ::1": lambda: loopback(socket.AF_INET6, "::1"),
    "tcp localhost": localhost_by_name,
    "udp 127.0.0.1": udp_loopback,
    "getaddrinfo localhost": lambda: socket.getaddrinfo("localhost", 80),
    "getaddrinfo 127.0.0.2": lambda: socket.getaddrinfo("127.0.0.2", 80),
    "getaddrinfo None": lambda: socket.getaddrinfo(None, 80),
    "gethostbyname localhost": lambda: socket.gethostbyname("localhost"),
    "unix socketpair": unix_pair,
    "python subprocess, no network": lambda: run([sys.executable, "-c", "print('hi')"]),
}

def outcome(attempt):
    try:
        attempt()
        return "ok"
    except Exception as err:
        if "offline guard" in str(err):  # the guard's PermissionError (wrapped by urllib, or a child's exit)
            return "refused"
        return f"{type(err).__name__}: {err}"

attempts = {**OUT_ATTEMPTS, **LOOPBACK_ATTEMPTS}
print(json.dumps({"netns": os.stat("/proc/self/ns/net").st_ino,
                  "outcomes": {name: outcome(attempts[name]) for name in json.loads(sys.argv[1])}}))
'''

OUT = ["tcp connect", "tcp connect_ex", "udp sendto", "udp sendmsg", "udp connect", "ipv6 connect", "packet sendto",
       "_socket connect", "_socket udp sendto", "create_connection", "urlopen", "getaddrinfo", "_socket getaddrinfo",
       "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "connect to a name starting 127.",
       "getaddrinfo of a name starting 127.", "python subprocess"]
NOT_PYTHON = ["python -I subprocess (skips the guard)", "python subprocess, guard cleared from env", "bash /dev/tcp",
              "curl", "os.system", "os.posix_spawn", "os.execv"]
LOOPBACK = ["tcp 127.0.0.1", "tcp ::1", "tcp localhost", "udp 127.0.0.1", "getaddrinfo localhost",
            "getaddrinfo 127.0.0.2", "getaddrinfo None", "gethostbyname localhost", "unix socketpair",
            "python subprocess, no network"]


def guarded_python(names: list[str], log: Path, ns, named=None) -> dict:
    """Run ATTEMPTS in a Python started as smoke_run starts a kernel: environment from guard_env, inside `ns`
    (None: here), the variables naming `named` (default `ns`) as the kernels' namespace."""
    env = {**os.environ, **glassbox_offline.guard_env(log, named or ns, os.environ.get("PYTHONPATH"))}
    if not (named or ns):  # the fallback machines: the guard without a namespace
        env.pop("GLASSBOX_OFFLINE_NETNS", None)
    argv = [sys.executable, "-c", ATTEMPTS, json.dumps(names)]
    with ns.entered() if ns is not None else contextlib.nullcontext():
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def logged(log: Path) -> str:
    return log.read_text() if log.exists() else ""


@pytest.fixture
def namespace(no_network):
    if no_network is None:
        pytest.skip("this machine makes no network namespace (needs root); the fallback is tested below")
    return no_network


def test_every_python_way_out_is_refused_and_logged_inside_the_kernels_namespace(namespace, tmp_path):
    log = tmp_path / "attempts.log"
    result = guarded_python(OUT, log, namespace)
    assert result["netns"] == namespace.inode, "the guarded Python did not start in the offline namespace"
    assert result["netns"] != os.stat("/proc/self/ns/net").st_ino
    not_refused = {k: v for k, v in result["outcomes"].items() if v != "refused"}
    assert not not_refused, f"ways out the offline guard let through: {not_refused}"
    lines = logged(log).splitlines()
    assert len(lines) == len(OUT), f"expected one logged line per attempt, got:\n{logged(log)}"
    for what in ("connect", "connect_ex", "sendto", "sendmsg", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                 "gethostbyaddr", "getnameinfo"):
        assert any(line.split()[1] == what for line in lines), f"no logged {what} attempt in:\n{logged(log)}"
    assert any("127.0.0.1.example.invalid" in line for line in lines)


def test_programs_the_guard_cannot_see_find_no_network_in_the_namespace(namespace, tmp_path):
    log = tmp_path / "attempts.log"
    names = [n for n in NOT_PYTHON + ["ctypes libc connect"] if n != "curl" or shutil.which("curl")]
    result = guarded_python(names, log, namespace)
    assert result["netns"] == namespace.inode
    reached = {name: outcome for name, outcome in result["outcomes"].items() if outcome in ("ok", "refused")}
    assert not reached, f"expected no network (not the guard) to stop these: {reached}"
    for name, outcome in result["outcomes"].items():
        if not name.startswith("os."):  # their messages went to stderr
            assert "unreachable" in outcome.lower() or "connect" in outcome.lower(), f"{name}: {outcome}"
    assert not logged(log), "no Python guard ran in these, so nothing is logged"


def test_the_namespace_has_loopback_only(namespace):
    with namespace.entered():
        done = subprocess.run(["cat", "/proc/net/dev"], capture_output=True, text=True, check=True)
    interfaces = [line.split(":")[0].strip() for line in done.stdout.splitlines()[2:]]
    assert interfaces == ["lo"], interfaces
    assert os.stat("/proc/thread-self/ns/net").st_ino != namespace.inode, "the test thread did not switch back"


def test_loopback_still_works_for_the_kernel(namespace, tmp_path):
    log = tmp_path / "attempts.log"
    result = guarded_python(LOOPBACK, log, namespace)
    assert result["outcomes"] == {name: "ok" for name in LOOPBACK}
    assert not logged(log), f"loopback use was logged as a network attempt:\n{logged(log)}"


@pytest.mark.parametrize("named", ["no namespace", "another namespace"])
def test_outside_the_namespace_the_guard_contains_what_it_cannot_see(named, no_network, tmp_path):
    """Where no namespace can be made for the kernel, or a guarded Python runs outside it, the guard starts
    non-Python programs, and Pythons that skip it, in a network namespace of their own (unshare); Python's own
    ways out are refused as before. (Run outside any namespace, so nothing is tried that the guard does not
    stop before a packet is sent.)"""
    if not shutil.which("unshare"):
        pytest.skip("no unshare here: the guard refuses these programs instead")
    if named == "another namespace" and no_network is None:
        pytest.skip("this machine makes no network namespace")
    log = tmp_path / "attempts.log"
    result = guarded_python(OUT + NOT_PYTHON + LOOPBACK, log, None, no_network if named == "another namespace" else None)
    outcomes = result["outcomes"]
    assert result["netns"] == os.stat("/proc/self/ns/net").st_ino
    refused = [k for k in OUT if not outcomes[k].startswith("RuntimeError: unavailable")]
    assert {k: outcomes[k] for k in refused} == {k: "refused" for k in refused}
    reached = {k: outcomes[k] for k in NOT_PYTHON if outcomes[k] in ("ok", "refused")}
    assert not reached, f"expected these to start without network: {reached}"
    for name in NOT_PYTHON:
        if not name.startswith("os."):  # their messages went to stderr
            assert any(m in outcomes[name].lower() for m in ("unreachable", "connect", "unshare failed")), outcomes[name]
    assert {k: outcomes[k] for k in LOOPBACK} == {k: "ok" for k in LOOPBACK}
    assert len(logged(log).splitlines()) == len(refused), logged(log)


@pytest.mark.notebook
def test_a_kernel_started_as_smoke_run_starts_one_runs_offline(namespace, tmp_path, monkeypatch):
    """papermill's kernel and its client talk over loopback TCP inside the namespace; the kernel sees only `lo`,
    and what it tries is refused and logged."""
    import nbformat
    import papermill

    log = tmp_path / "attempts.log"
    for key, value in glassbox_offline.guard_env(log, namespace, os.environ.get("PYTHONPATH")).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, socket\n"
        "print(os.stat('/proc/self/ns/net').st_ino, [ln.split(':')[0].strip() for ln in open('/proc/self/net/dev')][2:])\n"
        "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\nexcept OSError as err:\n    print(err)")]
    nbformat.write(nb, tmp_path / "probe.ipynb")
    with namespace.entered():
        papermill.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   progress_bar=False, cwd=str(tmp_path))
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"].splitlines()
    assert printed[0] == f"{namespace.inode} ['lo']", printed
    assert "offline guard" in printed[1] and "192.0.2.1" in logged(log)
