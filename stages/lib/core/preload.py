"""A warm interpreter for DVC's stages: the libraries every stage imports (TensorFlow, pandas, SciPy,
...) are imported once, in a server process, and each stage run by DVC is a fork of it instead of a
fresh interpreter that imports them again (about 5 s a stage with TensorFlow, 2 s without; a run
has dozens of stages).

How a stage gets there: `python -m stages.<name>` imports the `stages` package first, whose
`__init__` calls `hand_off()`. Under DVC (DVC_STAGE set), unless FACE_BIAS_PRELOAD=0 or verbose:
- a server for this interpreter is up: the stage's module, arguments, working folder, environment,
  umask and standard streams (the file descriptors themselves) go to it; it forks; the fork takes
  them on, drops every `stages` module the server had (the project's code is always imported fresh,
  from the stage's own working folder, so an edit is never served stale) and runs the module as
  `python -m` would. The launching process relays signals to the fork and exits with its status.
- none is up: the stage runs as it always did, in its own interpreter, and starts a server for the
  stages that follow.
Only third-party libraries are ever preloaded. A server serves one interpreter with one set of
import-time settings (installed packages, TF_/OMP_/... variables, niceness, this file): anything else
gets a server of its own. It leaves after FACE_BIAS_PRELOAD_IDLE seconds without a stage (default 600).
Its files (socket, lock, log) are in a folder of the user's own under the temporary folder.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib
import json
import os
import random
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from stages.lib.core.quiet import VERBOSE_ENV, is_verbose

PRELOAD_ENV = "FACE_BIAS_PRELOAD"
IDLE_ENV = "FACE_BIAS_PRELOAD_IDLE"
STARTED_ENV = "FACE_BIAS_STARTED"   # when the launching process began (epoch s): a stage's start-up is timed from it
DEFAULT_IDLE_S = 600.0
LIBRARIES = ("numpy", "pandas", "pyarrow.parquet", "scipy.stats", "sklearn.cluster", "statsmodels.api",
             "matplotlib.pyplot", "cv2", "skimage.color", "yaml", "pydantic", "dvclive", "fairlearn.metrics",
             "tensorflow", "keras")
IMPORT_TIME_PREFIXES = ("TF_", "OMP_", "OPENBLAS_", "MKL_", "KERAS_", "CUDA_", "XLA_", "PYTHON", "LD_", "MPL",
                        VERBOSE_ENV)
RELAYED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PROJECT_PACKAGE = "stages"
CHILD_MARKER = "<preloaded>"   # sys.argv[0] while a fork imports the stage: `stages/__init__` hands nothing off then
MAX_REQUEST = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Request:
    """Everything a fork needs to become `python -m <module> <args>` as the launching process would be."""

    module: str
    args: list[str]
    cwd: str
    environ: dict[str, str]
    path: list[str]
    umask: int

    def encode(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Request":
        return cls(**json.loads(data))


def requested_module(argv: Sequence[str], orig_argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The stage module to hand to a server (`stages.train`), or None: only for `python -m stages.<name>`
    run by DVC, not switched off, not verbose."""
    if argv[:1] != ["-m"] or "DVC_STAGE" not in environ or environ.get(PRELOAD_ENV, "1").strip() == "0":
        return None
    if is_verbose(environ, orig_argv):
        return None
    flag = list(orig_argv).index("-m") if "-m" in orig_argv else -1
    module = orig_argv[flag + 1] if 0 <= flag < len(orig_argv) - 1 else ""
    return module if module.startswith(PROJECT_PACKAGE + ".") else None


def server_key(environ: Mapping[str, str], *, niceness: int) -> str:
    """What a server's imports depend on: this interpreter, its installed packages (their folders'
    modification times change with every install), the import-time variables, niceness and this file."""
    site = sorted({path for path in sys.path if path.endswith("-packages") and os.path.isdir(path)})
    parts = [os.path.realpath(sys.executable), sys.version, str(niceness), Path(__file__).read_text()]
    parts += [f"{path}:{os.stat(path).st_mtime_ns}" for path in site]
    parts += sorted(f"{key}={value}" for key, value in environ.items() if key.startswith(IMPORT_TIME_PREFIXES))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def server_folder() -> Path:
    """The user's own folder for servers' sockets, locks and logs (mode 700); OSError where that folder
    is someone else's or open to others (then every stage runs in its own interpreter)."""
    folder = Path(tempfile.gettempdir()) / f"face-bias-preload-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    state = folder.lstat()
    if state.st_uid != os.getuid() or state.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise PermissionError(f"{folder} is not this user's own folder")
    return folder


def hand_off() -> None:
    """Run this `python -m stages.<name>` in a warm server and exit with its status; return (to run
    here, as usual) where it should not or no server is up, starting one for the stages to come."""
    module = requested_module(sys.argv, getattr(sys, "orig_argv", []), os.environ)
    if module is None:
        return
    key = server_key(os.environ, niceness=os.getpriority(os.PRIO_PROCESS, 0))
    request = Request(module=module, args=list(sys.orig_argv[sys.orig_argv.index("-m") + 2:]), cwd=os.getcwd(),
                      environ={**os.environ, STARTED_ENV: str(process_started())}, path=list(sys.path),
                      umask=_current_umask())
    status = _ask_server(key, request)
    if status is None:
        try:
            _start_server(key)
        except OSError:   # no folder of our own, no process to spare: the stages run as they always did
            pass
        return
    _exit_like(status)


def process_started(environ: Mapping[str, str] = os.environ) -> float:
    """When this stage's process began (epoch s): its launcher's start where it was handed to a server."""
    if STARTED_ENV in environ:
        return float(environ[STARTED_ENV])
    try:
        import psutil
        return psutil.Process().create_time()
    except Exception:   # no process table to read: timed from now
        return time.time()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ask_server(key: str, request: Request) -> dict | None:
    """The fork's final status ({"exit": n} or {"signal": n}), or None where no server took the request
    (nothing ran then)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(server_folder() / f"{key}.sock"))
        socket.send_fds(client, [request.encode()], [0, 1, 2])
        replies = client.makefile("r")
        started = replies.readline()
    except OSError:
        client.close()
        return None
    if not started:
        client.close()
        return None
    pid = json.loads(started)["pid"]
    for signum in RELAYED_SIGNALS:
        signal.signal(signum, lambda received, frame: _signal_group(pid, received))
    final = replies.readline()
    return json.loads(final) if final else {"exit": 1, "lost": True}


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_like(status: dict) -> None:
    """Leave as the fork did: its exit code, or killed by the same signal."""
    sys.stdout.flush()
    if status.get("lost"):
        print("the warm server running this stage went away; run it again (FACE_BIAS_PRELOAD=0 runs each "
              "stage in its own interpreter)", file=sys.stderr)
    if "signal" in status:
        signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
    os._exit(status.get("exit", 1))


def _start_server(key: str) -> None:
    """Start a server for `key` in its own session unless one holds the key's lock (it is starting)."""
    folder = server_folder()
    with open(folder / f"{key}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        fcntl.flock(lock, fcntl.LOCK_UN)
    environ = {name: value for name, value in os.environ.items() if name not in {"DVC_STAGE", "DVC_ROOT"}}
    code = f"from stages.lib.core import preload; preload.serve({key!r})"
    with open(folder / f"{key}.log", "ab") as log:
        subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), env=environ, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True)


def serve(key: str, libraries: Sequence[str] = LIBRARIES) -> None:
    """The server: hold the key's lock, import `libraries`, answer requests until idle. A fork never
    returns from here (`_become` runs the stage and exits); the server itself returns when idle."""
    folder = server_folder()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # an ignored SIGCHLD, inherited, would reap the forks unseen
    lock = open(folder / f"{key}.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    for name in libraries:
        try:
            importlib.import_module(name)
        except Exception:   # an optional library missing here is imported by the stage that needs it
            pass
    path = folder / f"{key}.sock"
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S)))
    running: set[int] = set()
    while True:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            if running:
                continue
            listener.close()
            for leftover in (path, folder / f"{key}.lock"):
                leftover.unlink(missing_ok=True)
            return
        pid = _fork_for(connection, listener, lock)
        if pid:
            running.add(pid)
            threading.Thread(target=_watch, args=(pid, connection, running), daemon=True).start()


def _fork_for(connection: socket.socket, listener: socket.socket, lock) -> int:
    """Fork for one request; the fork never returns (it becomes the stage), the server gets its pid, or 0
    where the request could not be read."""
    try:
        connection.settimeout(10.0)
        data, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 3)
        request = Request.decode(data)
    except (OSError, ValueError, TypeError):
        connection.close()
        return 0
    pid = os.fork()
    if pid == 0:
        listener.close()
        lock.close()
        _become(request, fds, connection)
    for fd in fds:
        os.close(fd)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    connection.sendall((json.dumps({"pid": pid}) + "\n").encode())
    return pid


def _watch(pid: int, connection: socket.socket, running: set[int]) -> None:
    """Send the fork's status to its launcher when it ends ({"lost": true} where it could not be
    learnt); stop the fork's process group where the launcher goes away first (killed, or its terminal
    closed)."""
    try:
        status = _wait_for(pid, connection)
        reply = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
    except OSError:   # reaped elsewhere, or no such process: the launcher must not wait for ever
        reply = {"exit": 1, "lost": True}
    running.discard(pid)
    try:
        connection.sendall((json.dumps(reply) + "\n").encode())
    except OSError:
        pass
    connection.close()


def _wait_for(pid: int, connection: socket.socket) -> int:
    """The fork's wait status, once it has ended."""
    connection.settimeout(None)
    try:
        ended = os.pidfd_open(pid)   # readable when the fork ends
    except (AttributeError, OSError):
        ended = None
    try:
        while True:
            readable, _, _ = select.select([connection] + ([ended] if ended is not None else []), [], [], 0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if connection in readable and not connection.recv(1):
                _signal_group(pid, signal.SIGTERM)
                return os.waitpid(pid, 0)[1]
    finally:
        if ended is not None:
            os.close(ended)


def _become(request: Request, fds: list[int], connection: socket.socket) -> None:
    """In the fork: take on the launcher's streams, folder, environment and path, forget the project's
    modules, run the stage module as `python -m` would, and leave as multiprocessing's forks do
    (threads joined, exit handlers run, streams flushed, no interpreter teardown: that takes a second
    with TensorFlow loaded)."""
    connection.close()
    os.setpgid(0, 0)
    for signum in RELAYED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    _reopen_streams()
    os.chdir(request.cwd)
    os.umask(request.umask)
    os.environ.clear()
    os.environ.update(request.environ)
    sys.path[:] = request.path
    sys.argv = [CHILD_MARKER, *request.args]
    for name in [name for name in sys.modules if name == PROJECT_PACKAGE or name.startswith(PROJECT_PACKAGE + ".")]:
        del sys.modules[name]
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    _leave(_run_module(request.module))


def _run_module(module: str) -> int | signal.Signals:
    """Run `module` as __main__; its exit code as the interpreter would give it (a traceback printed:
    1), or SIGINT where it was interrupted."""
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _leave(status: int | signal.Signals) -> None:
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if isinstance(status, signal.Signals):
        signal.signal(status, signal.SIG_DFL)
        os.kill(os.getpid(), status)
    os._exit(status)


def _reopen_streams() -> None:
    """sys.stdin/stdout/stderr over the launcher's descriptors, buffered as a fresh interpreter's are."""
    sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
