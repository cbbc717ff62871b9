"""Credentials in URLs: hide them in anything printed, and move them out of URLs before use.

A URL may carry `user:password@` (an MLflow tracking URI, a private mirror). `redact_url`
is the single place that hides such passwords in text; `split_credentials` takes them out
of a URL so the password travels in an HTTP header only and never reaches urllib's own
messages.
"""
import base64
import re
import urllib.parse

HIDDEN = "<hidden>"
# scheme://user:password@ — the password runs to the last '@' before the path, query or
# fragment, as urllib splits it (a raw '@' or ':' inside a password is hidden whole).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#\s:@]*:)[^/?#\s]*@")


def redact_url(text: str) -> str:
    """`text` (a URL or any message holding URLs) with the password of every
    `scheme://user:password@host` in it replaced by HIDDEN; the user name and host stay,
    text without credentials comes back unchanged."""
    return _URL_PASSWORD.sub(rf"\1{HIDDEN}@", str(text))


def split_credentials(url: str):
    """(url without `user:password@`, user, password) with user and password percent-decoded;
    user and password are None when the URL carries none (password is '' for `user@host`)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    plain = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return plain, urllib.parse.unquote(user), urllib.parse.unquote(password) if has_password else ""


def basic_auth_header(user: str, password: str) -> str:
    """The value of an HTTP `Authorization` header for Basic auth (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"
