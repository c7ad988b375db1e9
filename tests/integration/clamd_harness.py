"""Boot a private clamd with a tiny signature database, for tests.

`PrivateClamd` writes its own clamd.conf and signature files into a fresh
temporary directory, starts Debian's `clamd` in the foreground (so we own
its PID and stop it by that PID only), and waits until both its unix socket
and its TCP port on 127.0.0.1 answer PING.

The signature database is made at test time from Debian's clamav-testfiles:
  - test.hdb: `md5:size:Dovekie.Test.ClamExe` for clam.exe, so clam.exe is
    found inside every container clamd unpacks (zip, 7z, tar.gz, mail...);
  - test.ndb: the EICAR string as a hex body signature.
No downloaded database is needed.

Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Optional

TESTFILES = Path("/usr/share/clamav-testfiles")
CLAM_EXE = TESTFILES / "clam.exe"

#: The EICAR test string (68 bytes), built from parts so that this source
#: file itself does not trip a scanner.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS"
         + b"-TEST-FILE!$H+H*")

CLAM_EXE_SIGNATURE = "Dovekie.Test.ClamExe"
EICAR_SIGNATURE = "Dovekie.Test.Eicar"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class ClamdStartError(RuntimeError):
    """clamd did not come up; the message carries its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_signatures(db_dir: Path, extra_ndb: str = "") -> None:
    """Write the tiny signature DB (test.hdb, test.ndb) into db_dir."""
    data = CLAM_EXE.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    (db_dir / "test.hdb").write_text(f"{md5}:{len(data)}:{CLAM_EXE_SIGNATURE}\n")
    # ndb: Name:TargetType:Offset:HexSignature (0 = any file type).
    (db_dir / "test.ndb").write_text(
        f"{EICAR_SIGNATURE}:0:*:{EICAR.hex()}\n" + extra_ndb)


def _stop(proc: subprocess.Popen, tmpdir: str, keep: bool) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
    if not keep:
        shutil.rmtree(tmpdir, ignore_errors=True)


class PrivateClamd:
    """A private clamd on a unix socket and on 127.0.0.1:<free port>.

    stop() and start() may be called again (fault tests stop clamd and
    restart it on the same socket and port).
    """

    def __init__(self, stream_max: str = "30M", extra_conf: str = ""):
        self.stream_max = stream_max
        self.extra_conf = extra_conf
        self.keep_tmp = os.environ.get("DOVEKIE_KEEP_TMP") == "1"
        self.tmpdir = Path(tempfile.mkdtemp(prefix="dovekie-clamd-"))
        # The mail processes (another uid) must reach the socket.
        self.tmpdir.chmod(0o755)
        self.db_dir = self.tmpdir / "db"
        self.db_dir.mkdir()
        write_signatures(self.db_dir)
        self.socket_path = self.tmpdir / "clamd.sock"
        self.log_path = self.tmpdir / "clamd.log"
        self.config_path = self.tmpdir / "clamd.conf"
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def unix_address(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def _render(self) -> str:
        user = ""
        if os.geteuid() == 0:
            # Never run the private clamd as root; Debian's clamav account
            # exists wherever clamav-daemon is installed.
            user = "User clamav\n"
            shutil.chown(self.tmpdir, "clamav")
            shutil.chown(self.db_dir, "clamav")
        return (f"LocalSocket {self.socket_path}\n"
                "LocalSocketMode 666\n"
                "FixStaleSocket yes\n"
                f"TCPSocket {self.port}\n"
                "TCPAddr 127.0.0.1\n"
                f"DatabaseDirectory {self.db_dir}\n"
                f"LogFile {self.log_path}\n"
                f"PidFile {self.tmpdir}/clamd.pid\n"
                f"TemporaryDirectory {self.tmpdir}\n"
                "Foreground yes\n"
                f"{user}"
                f"StreamMaxLength {self.stream_max}\n"
                "ScanMail yes\nScanArchive yes\n"
                "SelfCheck 1\n"
                "MaxThreads 4\n"
                + self.extra_conf)

    def start(self) -> "PrivateClamd":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("clamd is already running")
        self.config_path.write_text(self._render())
        stderr = open(self.tmpdir / "clamd.stderr", "ab")
        try:
            self.proc = subprocess.Popen(
                ["clamd", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                start_new_session=True)
        finally:
            stderr.close()
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, self.proc,
                                           str(self.tmpdir), self.keep_tmp)
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.ping_unix() and self.ping_tcp()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = ""
                for name in ("clamd.log", "clamd.stderr"):
                    try:
                        log += (self.tmpdir / name).read_text(errors="replace")
                    except OSError:
                        pass
                self.stop_process()
                raise ClamdStartError(f"clamd did not start:\n{log}")
            time.sleep(0.1)
        return self

    def stop_process(self) -> None:
        """Stop clamd by its PID, keeping the state directory (restartable)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop clamd and remove its directory; idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        elif not self.keep_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "PrivateClamd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- talking to it ---------------------------------------------------

    def _command(self, family: int, address, command: bytes,
                 timeout: float = 2.0) -> bytes:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
            s.sendall(b"z" + command + b"\0")
            reply = b""
            while not reply.endswith(b"\0"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.rstrip(b"\0")

    def ping_unix(self) -> bool:
        try:
            return self._command(socket.AF_UNIX, str(self.socket_path),
                                 b"PING") == b"PONG"
        except OSError:
            return False

    def ping_tcp(self) -> bool:
        try:
            return self._command(socket.AF_INET, ("127.0.0.1", self.port),
                                 b"PING") == b"PONG"
        except OSError:
            return False

    def version(self) -> str:
        return self._command(socket.AF_UNIX, str(self.socket_path),
                             b"VERSION").decode()

    def instream(self, data: bytes) -> str:
        """Scan `data` over INSTREAM on the unix socket; returns the reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.socket_path))
            s.sendall(b"zINSTREAM\0" + len(data).to_bytes(4, "big") + data
                      + b"\0\0\0\0")
            reply = b""
            while not reply.endswith(b"\0"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.rstrip(b"\0").decode()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
