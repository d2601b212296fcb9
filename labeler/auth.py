"""Reviewers, their roles and their passwords: the --auth file, login checks and throttling.

The auth file holds one reviewer per line. `python -m labeler users add NAME --role ROLE --auth FILE`
writes the hashed form (stdlib scrypt, a random salt per password; the file is created with mode
600):

    alice:admin:scrypt$16384$8$1$<salt>$<hash>
    bob:annotator:scrypt$16384$8$1$<salt>$<hash>

The older plain form `name:password` (the first colon separates them) still loads, with a one-line
warning: such reviewers are **annotators** (they review; they cannot retrain or change the live
model), since a password kept in clear text is not one to trust with the model. Blank lines and
lines starting with `#` are skipped.

Roles: an `admin` retrains, makes a version live, changes workspace settings and runs bulk
actions; an `annotator` reviews. `Access` answers "may this login do that?" for the app, which
checks it in each model-changing handler (not only by hiding buttons). Without --auth the one
local user has every right on a loopback host; anywhere else (a share link, --host 0.0.0.0) the
app is a demo: review and try-it work, model-changing actions are refused.

`Authenticator` checks a login and throttles guessing: after MAX_FAILURES wrong passwords for a
name or from an address within WINDOW_S, further attempts are refused for LOCK_S seconds, doubled
at each new lock-out of the same name or address; each lock-out is logged.
"""
from __future__ import annotations

import base64
import contextvars
import getpass
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from store.workspace import WorkspaceError

log = logging.getLogger(__name__)

ROLES = ("admin", "annotator")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1     # ~16 MiB and ~50 ms per check: slow for a guesser
MAX_FAILURES = 5
WINDOW_S = 300.0
LOCK_S = 30.0
LOCK_MAX_S = 3600.0
CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)


class AuthFileError(WorkspaceError):
    """The --auth file cannot be used; the message names the file, the line and the fix."""


class AccessDenied(WorkspaceError):
    """A login (or the anonymous demo user) asked for an action its role does not allow."""


class LoginLocked(Exception):
    """Too many wrong passwords for this name or from this address: wait, then try again."""


# -- passwords ------------------------------------------------------------------------------------
def hash_password(password: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash` (salt and hash base64): what the auth file stores."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches a `hash_password` string (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt, validate=True), n=int(n),
                             r=int(r), p=int(p), maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = hash_password("not a password", salt=b"\0" * 16)


@dataclass(frozen=True)
class User:
    """One line of the auth file. `secret` is a scrypt string, or the password itself when `plain`."""
    name: str
    role: str
    secret: str = field(repr=False)
    plain: bool = False

    def check(self, password: str) -> bool:
        if self.plain:
            return hmac.compare_digest(password.encode("utf-8"), self.secret.encode("utf-8"))
        return verify_password(password, self.secret)

    def line(self) -> str:
        return f"{self.name}:{self.secret}" if self.plain else f"{self.name}:{self.role}:{self.secret}"


def _parse_line(line: str, where: str) -> User:
    name, sep, rest = line.partition(":")
    name = name.strip()
    if not sep:
        raise AuthFileError(f"{where}: expected `name:role:scrypt$...` (or `name:password`), found no colon")
    if not name:
        raise AuthFileError(f"{where}: the reviewer name before the colon is empty")
    role, sep2, secret = rest.partition(":")
    if sep2 and role in ROLES and secret.startswith("scrypt$"):
        if secret.count("$") != 5:
            raise AuthFileError(f"{where}: reviewer {name!r} has a damaged password hash; set it again with "
                                f"`python -m labeler users add {name} --role {role}`")
        return User(name, role, secret)
    if not rest:
        raise AuthFileError(f"{where}: reviewer {name!r} has an empty password")
    return User(name, "annotator", rest, plain=True)


def read_auth_file(path: Path | str) -> list[User]:
    """The reviewers of an auth file, in file order (see the module docstring for the format)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthFileError(f"auth file {path} not found; create it with "
                            "`python -m labeler users add NAME --role admin --auth FILE`") from None
    except UnicodeDecodeError as exc:
        raise AuthFileError(f"auth file {path} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise AuthFileError(f"auth file {path} cannot be read: {exc.strerror}") from None
    users: list[User] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"auth file {path}, line {number}"
        user = _parse_line(line, where)
        if user.name in seen:
            raise AuthFileError(f"{where}: reviewer {user.name!r} is already defined on line {seen[user.name]}; "
                                "keep one line per reviewer")
        seen[user.name] = number
        users.append(user)
    if not users:
        raise AuthFileError(f"auth file {path} lists no reviewer; add one with "
                            "`python -m labeler users add NAME --role admin --auth FILE`")
    return users


def file_warnings(path: Path | str, users: Iterable[User]) -> list[str]:
    """One line per thing to fix about an auth file: clear-text passwords, readable by others."""
    path = Path(path)
    out = []
    plain = [u.name for u in users if u.plain]
    if plain:
        out.append(f"auth file {path}: {len(plain)} password(s) stored in clear text ({', '.join(plain[:5])}"
                   f"{', ...' if len(plain) > 5 else ''}); they log in as annotators. Hash them and give a role "
                   f"with `python -m labeler users add NAME --role admin|annotator --auth {path}`")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0
    if mode & 0o077:
        out.append(f"auth file {path} is readable by other users of this machine (mode {mode:o}); "
                   f"run `chmod 600 {path}`")
    return out


def add_user(path: Path | str, name: str, role: str, password: str) -> bool:
    """Write (or replace) `name` with a fresh scrypt hash; other lines and comments are kept.

    The file is created with mode 600 and replaced atomically. Returns True when the name was
    already there (its role and password are replaced)."""
    name = name.strip()
    if not name or ":" in name or any(c.isspace() for c in name):
        raise AuthFileError(f"reviewer name {name!r} must be one word without colons or spaces")
    if role not in ROLES:
        raise AuthFileError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not password:
        raise AuthFileError(f"the password of {name!r} is empty; type one")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    new = User(name, role, hash_password(password)).line()
    replaced = False
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and line.partition(":")[0].strip() == name:
            lines[i], replaced = new, True
    if not replaced:
        lines.append(new)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return replaced


# -- who may do what ------------------------------------------------------------------------------
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: only this machine can reach such a server."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def os_user() -> str:
    """Who runs a CLI command, for the audit trail when no `--by` is given."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True)
class Access:
    """What each login may do. `users` is None without --auth; `demo` refuses every admin action."""
    users: dict[str, User] | None = None
    demo: bool = False

    @classmethod
    def for_launch(cls, users: Iterable[User] | None, *, host: str | None, share: bool) -> "Access":
        """Logins when there is an auth file; else every right on a loopback host, a demo elsewhere."""
        if users is not None:
            return cls({u.name: u for u in users})
        return cls(None, demo=share or not is_loopback(host))

    def role(self, login: str | None) -> str | None:
        if self.users is None:
            return None if self.demo else "admin"
        user = self.users.get(login or "")
        return user.role if user else None

    def require_admin(self, login: str | None, action: str, *, fallback: str = "") -> str:
        """The name to record as having done `action`; AccessDenied when this login may not."""
        if self.users is None and self.demo:
            raise AccessDenied(f"{action} is off in this demo (no --auth, reachable from other machines); "
                               "start launch.py with --auth FILE after `python -m labeler users add NAME "
                               "--role admin --auth FILE`")
        if self.users is None:
            who = (fallback or "").strip()
            return f"{who} (no login, local)" if who else f"{os_user()} (no login, local)"
        role = self.role(login)
        if role != "admin":
            raise AccessDenied(f"{action} needs the admin role; {login or 'this login'} is "
                               f"{'an ' + role if role else 'not a known reviewer'}. Ask an admin, or have one run "
                               f"`python -m labeler users add {login or 'NAME'} --role admin --auth FILE`")
        return str(login)

    def demo_line(self) -> str:
        return ("Demo mode: no --auth and reachable from other machines, so anyone can review and try the model, "
                "but retraining and changing the live version are off. Add users with `python -m labeler users "
                "add NAME --role admin --auth reviewers.txt` and start with --auth reviewers.txt.")


# -- login and throttling -------------------------------------------------------------------------
@dataclass
class _Strikes:
    failures: list[float] = field(default_factory=list)     # wrong passwords within the window
    last: float = 0.0                                         # the latest wrong password
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    """Failures per name and per address in a sliding window; a lock-out doubles each time.

    clock: seconds, monotonic (tests pass their own)."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, lock_s: float = LOCK_S,
                 lock_max_s: float = LOCK_MAX_S, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.lock_s, self.lock_max_s = max_failures, window_s, lock_s, lock_max_s
        self.clock = clock
        self._keys: dict[tuple[str, str], _Strikes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str | None) -> list[tuple[str, str]]:
        return [("name", name)] + ([("address", address)] if address else [])

    def check(self, name: str, address: str | None) -> None:
        """LoginLocked while the name or the address is locked out."""
        now = self.clock()
        with self._lock:
            for key in self.keys(name, address):
                s = self._keys.get(key)
                if s is not None and s.locked_until > now:
                    wait = int(s.locked_until - now + 0.999)
                    raise LoginLocked(f"too many wrong passwords for this {key[0]}; try again in {wait} s")

    def failed(self, name: str, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            if len(self._keys) > 10_000:       # many names or addresses tried: forget the quiet ones
                self._keys = {k: s for k, s in self._keys.items()
                              if s.locked_until > now or now - s.last < 12 * self.window_s}
            for key in self.keys(name, address):
                s = self._keys.setdefault(key, _Strikes())
                if s.lockouts and now - s.last > 12 * self.window_s:
                    s.lockouts = 0          # an hour without a wrong password: the delay starts over
                s.failures = [t for t in s.failures if now - t < self.window_s] + [now]
                s.last = now
                if len(s.failures) >= self.max_failures:
                    delay = min(self.lock_max_s, self.lock_s * 2 ** s.lockouts)
                    s.lockouts += 1
                    s.locked_until, s.failures = now + delay, []
                    log.warning("login locked for %s %r for %.0f s after %d wrong passwords within %.0f s",
                                key[0], key[1], delay, self.max_failures, self.window_s)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._keys.pop(("name", name), None)


class Authenticator:
    """Checks a login against the auth file's users, throttled (see `LoginThrottle`)."""

    def __init__(self, users: Iterable[User], throttle: LoginThrottle | None = None):
        self.users = {u.name: u for u in users}
        self.throttle = throttle or LoginThrottle()

    def attempt(self, name: str, password: str, address: str | None = None) -> bool:
        """True for the right password; False for a wrong one; LoginLocked while locked out."""
        name = (name or "").strip()
        self.throttle.check(name, address)
        user = self.users.get(name)
        ok = user.check(password) if user is not None else (verify_password(password, _DUMMY) and False)
        if ok:
            self.throttle.succeeded(name)
        else:
            self.throttle.failed(name, address)
        return ok

    def gradio_auth(self) -> Callable:
        """The `auth=` callable for Gradio's login route: async (the slow hash runs in a thread),
        the client's address from `CLIENT_ADDRESS`, a lock-out answered 429 with its wait."""
        import anyio
        from fastapi import HTTPException

        async def check(username: str, password: str) -> bool:
            address = CLIENT_ADDRESS.get()
            try:
                return await anyio.to_thread.run_sync(self.attempt, username, password, address)
            except LoginLocked as exc:
                raise HTTPException(status_code=429, detail=f"Login refused: {exc}.") from None

        return check


class ClientAddressMiddleware:
    """ASGI middleware: the request's client address in `CLIENT_ADDRESS` (Gradio's auth callable
    gets only the name and password)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        token = CLIENT_ADDRESS.set(client[0] if client else None)
        try:
            return await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)
