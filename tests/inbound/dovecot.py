"""A private Dovecot IMAP server for tests, listening on 127.0.0.1 only.

Each instance has its own configuration, runtime directory, passwd-file users and maildirs,
all in one short temporary directory (Dovecot's unix sockets must fit in 108 bytes, and
the mail user must be able to reach the maildir). Two listeners: implicit TLS and plain
IMAP with STARTTLS, each on a free ephemeral port. The default certificate is issued for
``127.0.0.1``; SNI ``imap.mailgate.test`` selects a second one (the pinning test).

Run as root (CI), Dovecot drops privileges: login processes run as ``dovenull``, mail
processes as the ``dovecot`` user, who owns the maildirs. Run as anyone else, every
process stays that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.tls import CertFiles


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def doveadm_binary() -> str | None:
    found = shutil.which("doveadm")
    if found:
        return found
    return "/usr/bin/doveadm" if os.access("/usr/bin/doveadm", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _logs(directory: Path) -> str:
    texts = []
    for name in ("dovecot.log", "stderr.log"):
        path = directory / name
        if path.exists():
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts) or "(no log written)"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with status {proc.returncode}: {_logs(directory)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {port}: {_logs(directory)}")


class Dovecot:
    """A running Dovecot; ``users`` maps user names to passwords.

    With ``oauth2_introspection`` (a URL), XOAUTH2 and OAUTHBEARER are offered too, and
    Dovecot's ``oauth2`` passdb asks that URL (RFC 7662 token introspection, POST) whether a
    bearer token is active and for which ``username``.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        cert: CertFiles,
        sni_cert: CertFiles,
        users: dict[str, str],
        oauth2_introspection: str | None = None,
    ) -> None:
        binary, doveadm = dovecot_binary(), doveadm_binary()
        assert binary and doveadm
        self.binary, self.doveadm = binary, doveadm
        self.users = users
        self.dir = Path(tempfile.mkdtemp(prefix="mg-dovecot-"))
        self.tls_port = _free_port()
        self.starttls_port = _free_port()
        self.log = self.dir / "dovecot.log"
        self.config = self.dir / "dovecot.conf"
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.geteuid()).pw_name
        mail = pwd.getpwnam("dovecot") if root else pwd.getpwuid(os.geteuid())
        mail_dir = self.dir / "mail"
        mail_dir.mkdir()
        (self.dir / "passwd").write_text(
            "".join(f"{name}:{{PLAIN}}{password}\n" for name, password in users.items())
        )
        if root:
            self.dir.chmod(0o755)
            os.chown(mail_dir, mail.pw_uid, mail.pw_gid)
        self._cert, self._sni_cert = cert, sni_cert
        self._oauth2 = oauth2_introspection
        if oauth2_introspection is not None:
            (self.dir / "oauth2.conf.ext").write_text(_OAUTH2.format(url=oauth2_introspection))
        self._root, self._me, self._mail = root, me, mail
        # A port picked here can be taken by another process before Dovecot binds it, so a
        # start that fails is tried again on fresh ports (and says why when it gives up).
        failures: list[str] = []
        for _ in range(3):
            try:
                self._start()
                return
            except RuntimeError as exc:
                failures.append(str(exc))
                self.tls_port, self.starttls_port = _free_port(), _free_port()
        raise RuntimeError("dovecot would not start:\n" + "\n".join(failures))

    def _start(self) -> None:
        self.config.write_text(
            _CONFIG.format(
                dir=self.dir,
                internal_user="dovecot" if self._root else self._me,
                login_user="dovenull" if self._root else self._me,
                uid=self._mail.pw_uid,
                gid=self._mail.pw_gid,
                tls_port=self.tls_port,
                starttls_port=self.starttls_port,
                cert=self._cert.cert_file,
                key=self._cert.key_file,
                sni_cert=self._sni_cert.cert_file,
                sni_key=self._sni_cert.key_file,
                mechanisms="plain login xoauth2 oauthbearer" if self._oauth2 else "plain login",
                oauth2_passdb=_OAUTH2_PASSDB.format(dir=self.dir) if self._oauth2 else "",
                passwd_mechanisms="  mechanisms = plain login none\n" if self._oauth2 else "",
            )
        )
        with (self.dir / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            _wait_listening(self.tls_port, self.proc, self.dir)
            _wait_listening(self.starttls_port, self.proc, self.dir)
        except BaseException:
            self.stop()
            raise

    def _doveadm(self, *args: str, data: bytes | None = None) -> None:
        subprocess.run(
            [self.doveadm, "-c", str(self.config), *args],
            input=data,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def deliver(self, user: str, raw: bytes, *, folder: str = "INBOX") -> None:
        """Put ``raw`` into the user's folder (as the mail user, through Dovecot)."""
        self._doveadm("save", "-u", user, "-m", folder, data=raw)

    def set_uidvalidity(self, user: str, value: int, *, folder: str = "INBOX") -> None:
        """Give the folder a new UIDVALIDITY, as a server that rebuilt its index would."""
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)


_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailgate-test-{tls_port}
log_path = {dir}/dovecot.log
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
auth_mechanisms = {mechanisms}
disable_plaintext_auth = yes
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
local_name imap.mailgate.test {{
  ssl_cert = <{sni_cert}
  ssl_key = <{sni_key}
}}
login_trusted_networks =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
{passwd_mechanisms}}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""

_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/oauth2.conf.ext
}}
"""

_OAUTH2 = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""
