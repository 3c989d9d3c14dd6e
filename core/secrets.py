"""Masking of secrets in what driftwarden prints, logs and pages.

Two helpers, used at every place a URL or an error text leaves the process:

- :func:`mask_url` keeps a URL readable (for a DSN shown by ``up`` or the demo): the password in
  its user info and the values of query-string parameters named like a secret (password, token,
  key, signature, ...) become ``***``;
- :func:`scrub_urls` is for free text such as an exception's message, where a URL's path may be
  the secret itself (a Slack webhook): every URL found keeps ``scheme://host[:port]`` only, and
  ``/***`` replaces the rest whenever it has user info, a path, a query or a fragment.

:func:`scrub` does both that and the replacement of known secret values (a malformed URL that
no pattern recognises, a key echoed by a server).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"

#: Query-string parameter names whose values are secrets (matched anywhere in the name,
#: case-insensitive): ``password``, ``passwd``, ``pwd``, ``secret``, ``token``, ``key`` (so
#: ``api_key``, ``access_key``, ``routing_key``), ``signature``, ``sig``, ``credential``, ``auth``.
SECRET_PARAM = re.compile(r"pass(word|wd)?|pwd|secret|token|key|signature|^sig$|credential|auth", re.IGNORECASE)

# scheme://anything up to white space, a quote or an angle bracket (how URLs sit in messages).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s'\"<>`]+")
_QUERY_PAIR = re.compile(r"([^&;=]*)=([^&;]*)")


def _host_part(netloc: str) -> str:
    """``host[:port]`` of a netloc, without its user info."""
    return netloc.rpartition("@")[2]


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and secret query values replaced by ``***``.

    A URL that cannot be parsed is replaced whole (``***``): it cannot be shown safely.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{userinfo}@{hostport}"
    query = _QUERY_PAIR.sub(lambda m: f"{m[1]}={MASK}" if SECRET_PARAM.search(m[1]) else m[0], parts.query)
    fragment = _QUERY_PAIR.sub(lambda m: f"{m[1]}={MASK}" if SECRET_PARAM.search(m[1]) else m[0], parts.fragment)
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    if parts.query:
        out += "?" + query
    if parts.fragment:
        out += "#" + fragment
    return out


def _scrub_one(match: re.Match) -> str:
    url = match[0]
    trail = re.search(r"[.,;:!?)\]]*$", url)[0]  # sentence punctuation after a URL is not part of it
    scheme, _, rest = url[:len(url) - len(trail)].partition("://")
    netloc, tail = re.match(r"([^/?#]*)(.*)", rest, re.DOTALL).groups()
    hostport = _host_part(netloc)
    if "@" in netloc or tail not in ("", "/"):
        return f"{scheme}://{hostport}/{MASK}{trail}"
    return f"{scheme}://{hostport}{tail}{trail}"


def scrub_urls(text: str) -> str:
    """``text`` with every URL cut to ``scheme://host[:port]/***`` when it holds user info, a
    path, a query or a fragment (any of which may be a secret)."""
    if not text:
        return text
    return _URL.sub(_scrub_one, text)


def url_secrets(url: str | None) -> list[str]:
    """The secret values a URL carries (its user-info password, secret query values, raw and
    decoded), for :func:`scrub` to replace wherever they appear."""
    if not url:
        return []
    from urllib.parse import unquote

    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    out = []
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        out.append(userinfo.partition(":")[2])
    for q in (parts.query, parts.fragment):
        out += [m[2] for m in _QUERY_PAIR.finditer(q) if SECRET_PARAM.search(m[1])]
    return [v for s in out if s for v in {s, unquote(s)}]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (an error message, a server's reply) with every known secret value replaced by
    ``***`` and every URL scrubbed (:func:`scrub_urls`)."""
    text = str(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= 4:  # a shorter "secret" would mask half the message and protect nothing
            text = text.replace(secret, MASK)
    return scrub_urls(text)
