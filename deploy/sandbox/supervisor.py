"""Main process of a sandbox container: keeps one interpreter warm, runs one program, reports.

Usage: supervisor.py LANGUAGE    (python, javascript or bash)

sandbox-service creates a container per run with this as its command and attaches to its stdin,
stdout and stderr. The protocol, all on those three streams:

1. At start the supervisor starts the language's runner (a fork of itself for Python and Bash,
   `node runner.js` for JavaScript), waits until it is ready, then prints READY on stdout. The
   container now waits, idle, in the warm pool.
2. The service writes the run on stdin: a 4-byte big-endian length, then that many bytes of
   length-prefixed fields (nonce, entry, arguments, files); then the program's own stdin; then it
   closes stdin. The supervisor reads exactly the header (unbuffered, so the rest of stdin stays
   for the program), writes the files into /work, prints GO with the CPU time used so far, and
   hands entry and arguments to the runner, which runs the program with the container's stdin,
   stdout and stderr as its own.
3. When the runner exits, the supervisor kills every process left (background children; it is
   their subreaper, so it can wait for all of them), reads the container's cgroup counters and
   prints the TRAILER on stdout: exit code, CPU time of the run, peak memory, OOM kills. Then it
   exits with the program's exit code.

READY and GO are printed before any code of the run exists, so nothing can imitate them. The
trailer carries the nonce, which only the service and this process know: the program never sees
it (the runner was started before it arrived, it never touches the files or the runner's pipe,
and this process is made non-dumpable so that the program cannot read its memory or fds through
/proc or ptrace). A program can still kill this process; the run then ends without a trailer and
the service takes the exit code from the engine instead.

Only the standard library; no request field is ever given to a shell.
"""

import os
import signal
import struct
import sys
import time

READY = b"\0\x1fautocrea-ready\n"
GO = b"\0\x1fautocrea-go "
END = b"\0\x1fautocrea-end "
WORK = "/work"
RUNNER_JS = "/opt/autocrea/runner.js"
# Largest header accepted (the service sends at most a few MiB).
MAX_HEADER = 64 * 1024 * 1024
# File descriptors the JavaScript runner finds its pipes on.
GO_FD, READY_FD = 3, 4


def read_exact(fd, n):
    """Exactly n bytes from fd, or None at end of input."""
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Fields:
    """Reader of the header's length-prefixed fields."""

    def __init__(self, data):
        self.data = data
        self.at = 0

    def count(self):
        (value,) = struct.unpack_from(">I", self.data, self.at)
        self.at += 4
        return value

    def bytes(self):
        n = self.count()
        value = self.data[self.at:self.at + n]
        if len(value) != n:
            raise ValueError("truncated header")
        self.at += n
        return value

    def text(self):
        return self.bytes().decode("utf-8")


def encode(strings):
    return b"".join(struct.pack(">I", len(s)) + s for s in (x.encode("utf-8") for x in strings))


def decode(data):
    fields = Fields(data)
    out = []
    while fields.at < len(data):
        out.append(fields.text())
    return out


# --- cgroup counters (v1 and v2), as seen from inside the container ---------------------------

def read_int(path, key=None):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    if key is None:
        try:
            return int(text.strip())
        except ValueError:
            return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def cpu_ns():
    usec = read_int("/sys/fs/cgroup/cpu.stat", "usage_usec")
    if usec is not None:
        return usec * 1000
    for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
        value = read_int(path)
        if value is not None:
            return value
    return None


def memory_counters():
    """(peak bytes, OOM kills) of the container."""
    if os.path.exists("/sys/fs/cgroup/cpu.stat"):
        return (read_int("/sys/fs/cgroup/memory.peak"),
                read_int("/sys/fs/cgroup/memory.events", "oom_kill") or 0)
    return (read_int("/sys/fs/cgroup/memory/memory.max_usage_in_bytes"),
            read_int("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill") or 0)


def show(value):
    return "-" if value is None else str(value)


# --- the runner (the process that becomes the program) -----------------------------------------

def prefer_me_when_out_of_memory():
    # The OOM killer then takes the program rather than the supervisor, which reports the kill.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def default_signals():
    # Python ignores these; a program started by exec would inherit that.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def runner(language, go_r, ready_w):
    """Body of the forked runner (Python and Bash): ready, wait for the run, become it."""
    prefer_me_when_out_of_memory()
    if language == "python":
        # What running the program needs, loaded while the container is idle.
        import importlib.machinery  # noqa: F401
        import types  # noqa: F401
    os.write(ready_w, b"r")
    os.close(ready_w)
    run = decode(read_all(go_r))
    os.close(go_r)
    if not run:
        os._exit(0)
    entry, args = run[0], run[1:]
    if language == "bash":
        default_signals()
        os.execvp("bash", ["bash", entry] + args)
    run_python(entry, args)


def run_python(entry, args):
    """Runs entry as `python3 entry args...` would, in this (already started) interpreter."""
    import builtins
    import importlib.machinery
    import types

    path = os.path.join(WORK, entry)
    sys.argv = [entry] + args
    sys.path[0] = os.path.dirname(path)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__cached__ = None
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as f:
            source = f.read()
        exec(compile(source, path, "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - reported as the interpreter would
        tb = error.__traceback__
        # Drop the runner's own frames: the traceback starts in the program, as usual.
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(WORK + "/"):
            tb = tb.tb_next
        sys.excepthook(type(error), error.with_traceback(tb), tb)
        code = 1
    sys.exit(code)


def start_runner(language):
    """Starts the runner; returns its pid, the write end of its run pipe, the read end of ready."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(ready_r)
            if language == "javascript":
                # Fixed descriptors for node: move both pipes out of the way, then into place.
                import fcntl

                go_r = fcntl.fcntl(go_r, fcntl.F_DUPFD_CLOEXEC, 10)
                ready_w = fcntl.fcntl(ready_w, fcntl.F_DUPFD_CLOEXEC, 10)
                os.dup2(go_r, GO_FD)
                os.dup2(ready_w, READY_FD)
                prefer_me_when_out_of_memory()
                default_signals()
                os.execvp("node", ["node", RUNNER_JS])
            runner(language, go_r, ready_w)
        except SystemExit:
            raise
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            os._exit(70)
        os._exit(0)
    os.close(go_r)
    os.close(ready_w)
    return pid, go_w, ready_r


# --- the supervisor ----------------------------------------------------------------------------

def prctl(option, value):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def kill_the_rest():
    """Kills every process this one may signal (all of the program's) and reaps them."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue


def exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def main():
    language = sys.argv[1]
    if language not in ("python", "javascript", "bash"):
        sys.exit(f"unknown language {language!r}")
    pid, go_w, ready_r = start_runner(language)
    prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans of the program are reparented here.
    prctl(4, 0)  # PR_SET_DUMPABLE = 0: no /proc/<pid>/mem, fd or ptrace for the program.
    if not os.read(ready_r, 1):
        _, status = os.waitpid(pid, 0)
        sys.exit(f"the {language} runner did not start (status {status})")
    os.close(ready_r)
    write_all(1, READY)

    length = read_exact(0, 4)
    if length is None:
        # The service let go of this container without a run.
        os._exit(0)
    (n,) = struct.unpack(">I", length)
    if n > MAX_HEADER:
        sys.exit("header too large")
    header = read_exact(0, n)
    if header is None:
        os._exit(0)
    fields = Fields(header)
    nonce = fields.bytes()
    entry = fields.text()
    args = [fields.text() for _ in range(fields.count())]
    for _ in range(fields.count()):
        name = fields.text()
        content = fields.bytes()
        path = os.path.join(WORK, name)
        directory = os.path.dirname(path)
        if directory != WORK:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, content)
        finally:
            os.close(fd)
    del header, fields

    base = cpu_ns()
    write_all(1, GO + show(base).encode() + b"\n")
    started = time.monotonic_ns()
    write_all(go_w, encode([entry] + args))
    os.close(go_w)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    duration = time.monotonic_ns() - started
    code = exit_code(status)
    kill_the_rest()
    used = cpu_ns()
    cpu = used - base if used is not None and base is not None else None
    peak, oom_kills = memory_counters()
    trailer = " ".join(show(v) for v in (code, cpu, peak, oom_kills, duration))
    write_all(1, END + nonce + b" " + trailer.encode() + b"\n")
    os._exit(code)


if __name__ == "__main__":
    main()
