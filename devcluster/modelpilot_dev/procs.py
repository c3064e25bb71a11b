"""Child processes of the simulated cluster: start with a log file, probe, stop by PID."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    pass


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    # The port may in theory be taken between this close and the child's bind (a clash
    # shows up as a failed start). The kernel can also hand the same free port to two
    # calls in a row (seen in CI: the controller-manager and the scheduler got one
    # port): a port this process handed out already is never handed out again.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _die_with_parent() -> None:
    # If the Python process is killed outright (SIGKILL, OOM), the kernel sends the child
    # SIGTERM instead of leaving an etcd or apiserver running. Linux only.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """One component, its stdout and stderr going to `<log_dir>/<name>.log`."""

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env  # the whole environment when given, else this process's
        self.log_path = log_dir / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal reaches only the Python process,
                # which then stops the components in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def check_alive(self) -> None:
        if self._popen is not None and self._popen.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with code {self._popen.returncode} (log: {self.log_path})"
            )

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None: never ran)."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.terminate()
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        return self._popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    processes: tuple[Process, ...] = (),
) -> float:
    """Poll `check` until it is true; fail early when a component died. Returns seconds."""
    started = time.monotonic()
    deadline = started + timeout
    last_error = ""
    while True:
        for process in processes:
            process.check_alive()
        try:
            if check():
                return time.monotonic() - started
        except Exception as err:  # probes fail in many ways while a server starts
            last_error = f": last error {err!r}"
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}")
        time.sleep(interval)


def http_ok(url: str, *, token: str | None = None, ca: Path | None = None) -> bool:
    """True when GET url answers 200 (https checked against `ca`, or unverified)."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if ca is not None:
            context = ssl.create_default_context(cafile=str(ca))
        else:
            # controller-manager and scheduler serve health checks on a certificate
            # they make up at start; only that they answer matters here.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with (
        contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
        urllib.request.urlopen(request, timeout=2, context=context) as response,
    ):
        return bool(response.status == 200)
    return False
