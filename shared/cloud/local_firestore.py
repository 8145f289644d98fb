"""The real Firestore emulator of the Google Cloud SDK on loopback, for tests and the local stack.

It needs `gcloud` and Java, which cannot be installed from the package registries, so callers check
`FirestoreEmulator.missing()` first. Development only: left out of the deploy bundle.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from shared.loopback import quiet_port


class FirestoreEmulator:
    """The SDK's Firestore emulator as a child process group on 127.0.0.1."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", startup_timeout_s: float = 90.0,
                 attempts: int = 3) -> None:
        """With no port, one outside the kernel's ephemeral range is chosen (and another one if the emulator
        finds it taken): Java takes seconds to bind, and an ephemeral port picked before that may meanwhile
        become the source port of any outgoing connection on the machine."""
        self._bind_host = host
        self._fixed_port = port
        self._attempts = 1 if port is not None else max(1, attempts)
        self.host = f"{host}:{port if port is not None else quiet_port(host)}"
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        """Why the emulator cannot run here, or None when it can."""
        if not shutil.which("gcloud"):
            return "the Google Cloud SDK (gcloud) is not installed"
        if not shutil.which("java"):
            return "Java (needed by the Firestore emulator) is not installed"
        return None

    def start(self) -> str:
        """Start and wait until it answers; returns host:port for FIRESTORE_EMULATOR_HOST."""
        reason = self.missing()
        if reason:
            raise RuntimeError(f"Firestore emulator unavailable: {reason}")
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                self.host = f"{self._bind_host}:{quiet_port(self._bind_host)}"
            exited = self._start_once()
            if exited is None:
                return self.host
            if attempt == self._attempts:
                raise RuntimeError(f"Firestore emulator exited with code {exited[0]} on {self.host}: {exited[1]}")
        raise AssertionError("unreachable")

    def _start_once(self) -> tuple[int, str] | None:
        """None once it answers; (exit code, last output line) when it exited (a taken port exits with 0)."""
        with tempfile.TemporaryFile() as log:
            # Own process group: gcloud starts a shell script that starts Java; stop() ends all three.
            self._proc = subprocess.Popen(
                ["gcloud", "emulators", "firestore", "start", f"--host-port={self.host}", "--quiet"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + self._startup_timeout_s
            while time.monotonic() < deadline:
                code = self._proc.poll()
                if code is not None:
                    self.stop()
                    log.seek(0)
                    return code, _reason_of(log.read().decode(errors="replace"))
                if self._answers():
                    return None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Firestore emulator not ready within {self._startup_timeout_s:.0f} s")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reset(self, project: str) -> None:
        """Delete every document of a project (the emulator's own reset endpoint)."""
        req = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE")
        with urllib.request.urlopen(req, timeout=5):
            pass

    def pause(self) -> None:
        """Freeze the emulator (SIGSTOP to its process group): Firestore unreachable, its data kept."""
        if self._proc is not None and _group_alive(self._proc.pid):
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and _group_alive(self._proc.pid):
            os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a frozen process group ignores SIGTERM until continued
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # gcloud may exit before its Java child: wait for the whole group to be gone, not just gcloud.
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not _group_alive(proc.pid):
                break
            os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(proc.pid):
                proc.poll()  # reap gcloud itself so it does not linger as a zombie
                time.sleep(0.1)
        proc.poll()

    def __enter__(self) -> FirestoreEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reason_of(output: str) -> str:
    """The line of the emulator's output that says why it stopped (a bind failure), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "BindException" in line or "Address already in use" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
