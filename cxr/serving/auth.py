"""Who may use the web app: an htpasswd file (bcrypt), or a user header set by an authenticating proxy.

`cxr serve` refuses to listen beyond loopback without one of them unless told to run open on purpose.
The health endpoints stay open for the orchestrator's probes, and the MLflow webhook, which carries its
own HMAC signature. User names may be logged; passwords and
uploads never are.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from cxr.errors import CxrError

log = logging.getLogger("cxr.serve")
OPEN_PATHS = ("/healthz", "/readyz", "/hooks/mlflow")  # the webhook is authenticated by its HMAC signature
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def read_htpasswd(path: Path) -> dict[str, bytes]:
    """user -> bcrypt hash; any other hash format is refused (MD5/SHA1/crypt are too weak to accept)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise CxrError(f"The htpasswd file {path} cannot be read ({exc.strerror}); check --htpasswd.") from exc
    users = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not user or not hashed.startswith(BCRYPT_PREFIXES):
            raise CxrError(
                f"{path} line {number} is not 'user:bcrypt-hash'; create entries with `htpasswd -B {path} USER`."
            )
        users[user] = hashed.encode()
    if not users:
        raise CxrError(f"{path} has no users; add one with `htpasswd -B {path} USER`.")
    return users


@dataclass
class Auth:
    """How requests are authenticated: htpasswd users, a trusted proxy header, or nothing."""

    users: dict[str, bytes] = field(default_factory=dict)
    user_header: str = ""
    _verified: set[str] = field(default_factory=set)  # digests of credentials already checked (bcrypt is slow)

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.user_header)

    def user(self, request) -> str | None:
        """The authenticated user of a Flask request, or None."""
        if self.user_header:
            return request.headers.get(self.user_header) or None
        credentials = request.authorization
        if credentials is None or credentials.type != "basic" or credentials.username not in self.users:
            return None
        password = (credentials.password or "").encode()
        digest = hashlib.sha256(self.users[credentials.username] + b"\0" + password).hexdigest()
        if digest not in self._verified:
            if not bcrypt.checkpw(password, self.users[credentials.username]):
                return None
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified.add(digest)
        return credentials.username

    def challenge(self) -> dict[str, str]:
        return {} if self.user_header else {"WWW-Authenticate": 'Basic realm="cxr", charset="UTF-8"'}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_auth(host: str, htpasswd: Path | None, user_header: str, insecure_open: bool) -> Auth:
    """The Auth for `cxr serve`; refuses an unauthenticated listener beyond loopback unless `insecure_open`."""
    if htpasswd and user_header:
        raise CxrError("Pass either --htpasswd or --trusted-user-header, not both.")
    auth = Auth(read_htpasswd(htpasswd) if htpasswd else {}, user_header)
    if auth.enabled or is_loopback(host):
        return auth
    if not insecure_open:
        raise CxrError(
            f"Refusing to listen on {host} without authentication: pass --htpasswd FILE (bcrypt, "
            "`htpasswd -B -c FILE USER`) or --trusted-user-header NAME (behind an authenticating proxy that "
            "sets it), or --insecure-open to run open on purpose."
        )
    log.warning("serving OPEN on %s (--insecure-open): anyone who reaches it can upload X-rays", host)
    return auth
