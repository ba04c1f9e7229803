"""Visitors' email addresses: only the plain `local@domain` form an SMTP server takes as is."""

from __future__ import annotations

import re
from email.utils import parseaddr

# The dot-atom of RFC 5322, in ASCII: no quoted strings, comments, groups or domain literals.
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TLD_RE = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


def normalize_email(address: str) -> str | None:
    """`address` as it is kept and sent to (its domain lower-cased and IDNA-encoded), or None
    when it is not a plain address with a resolvable-looking domain."""
    if not address or len(address) > 254 or not address.isprintable():
        return None
    local, at, domain = address.rpartition("@")
    if not at or len(local) > 64 or not _LOCAL_RE.match(local):
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        return None
    if not _TLD_RE.match(labels[-1]):
        return None
    normalized = f"{local}@{ascii_domain}"
    if parseaddr(normalized) != ("", normalized):
        return None
    return normalized
