"""A fork server for ``python train.py``: the tests' train runs start in milliseconds.

Every ``python train.py ...`` pays about 3.5 s before it does anything: the interpreter, torch,
``torch._dynamo`` (imported by the first optimizer PyTorch builds) and our packages. The suite
runs train.py well over a hundred times, directly and through the bash scripts, so that start-up
was most of its wall time. This server imports all of it once and then forks one child per run.
A child is a fresh process in every way a test can observe: its own pid, the caller's working
directory, environment and stdin/stdout/stderr (the file descriptors themselves are passed over
the socket), its own exit status, and its own signal dispositions. Only the imported modules are
shared (copy-on-write).

Protocol (one connection per run): the client sends one JSON line ``{"argv", "cwd", "env", "umask"}`` with
its fds 0, 1, 2 attached (SCM_RIGHTS); the server forks a *supervisor*, which forks the *runner*,
sends ``{"pid": runner}`` back, waits for the runner and sends ``{"status": code}`` (negative for
a signal, as :mod:`subprocess` reports it). When the client disconnects first (a killed client or
a test timeout), the supervisor kills the runner, so nothing keeps running.

The server must not start threads or run torch operations before forking (an OpenMP pool does
not survive a fork); it checks that preloading started no thread beyond the one ``import torch``
starts itself.

``tests/helpers/train_client.py`` is the client; the tests point ``PYTHON`` at it (scripts run
``$PYTHON train.py``) and ``run_train`` calls it. Usage: ``python -m tests.helpers.train_server
SOCKET``.
"""
import array
import json
import os
import select
import signal
import socket
import sys

ENV_VAR = "PROMPTCLIP_TRAIN_SERVER"


def preload():
    """Import what every train.py run imports (and what its first optimizer imports); return
    the number of threads ``import torch`` itself starts (a native helper thread that every
    DataLoader worker fork also lives with)."""
    import torch  # noqa: F401

    baseline = thread_count()
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: ~1 s)

    import train  # noqa: F401  (dassl, clip, trainers, datasets)
    from clip.tokenizer import get_tokenizer

    get_tokenizer()  # reading the BPE vocabulary: ~0.15 s per run
    return baseline


def receive_request(conn):
    """The request dict and the three file descriptors sent with it."""
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
        if not msg:
            raise ConnectionError("client closed the connection before sending its request")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        data += msg
    return json.loads(data), list(fds)


def run_in_child(request, fds):
    """Become the train.py process the client asked for; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        # A fresh interpreter's dispositions (it ignores SIGPIPE, as the server does).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.umask(request.get("umask", 0o022))
        os.environ.clear()
        os.environ.update(request["env"])
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            # A fresh interpreter's OpenMP reads this at start-up; the server's already started.
            import torch

            torch.set_num_threads(int(threads))
        # The standard streams on the new fds, buffered as a fresh interpreter buffers them.
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1 if unbuffered or os.isatty(1) else -1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin
        from dassl.utils import faults

        faults.configure_from_environment()
        import train

        argv = request["argv"]
        sys.argv = [argv[0]] + list(argv[1:])
        try:
            code = train.cli(list(argv[1:]))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if exit_.code is not None and not isinstance(exit_.code, int):
                print(exit_.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 130
    except BaseException:  # noqa: BLE001  (report anything, as the interpreter would)
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code if isinstance(code, int) else 1)


def supervise(conn, request, fds):
    """Fork the runner, report its pid and exit status; kill it if the client goes away."""
    runner = os.fork()
    if runner == 0:
        conn.close()
        run_in_child(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall((json.dumps({"pid": runner}) + "\n").encode())
    while True:
        done, status = os.waitpid(runner, os.WNOHANG)
        if done:
            break
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1, socket.MSG_PEEK):
            os.killpg(runner, signal.SIGKILL)  # the client is gone: so is its run
            os.waitpid(runner, 0)
            return
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:
        conn.sendall((json.dumps({"status": code}) + "\n").encode())
    except OSError:
        pass


def thread_count():
    """Threads of this process (the server must have exactly one when it forks)."""
    return len(os.listdir("/proc/self/task"))


def serve(path):
    """Accept connections on the Unix socket ``path`` until killed."""
    baseline = preload()
    if thread_count() != baseline:
        raise RuntimeError(f"train server: {thread_count()} threads after preloading (torch alone: "
                           f"{baseline}); forking is unsafe")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped automatically
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                request, fds = receive_request(conn)
                supervise(conn, request, fds)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
