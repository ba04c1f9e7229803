"""Which addresses a visitor may leave: the plain form an SMTP server takes as is."""

from __future__ import annotations

import pytest

from copines.emails import normalize_email


@pytest.mark.parametrize(
    "address",
    [
        "a:b@c.fr",  # group syntax
        "marie(commentaire)@exemple.fr",
        "x@[127.0.0.1].fr",  # domain literal
        "x@[127.0.0.1]",
        "a)@b.fr",
        "marie@exemple..fr",  # an empty label: aiosmtplib raises ValueError on it
        "marie@-exemple.fr",
        "marie@exemple.f",
        "marie@exemple",
        ".marie@exemple.fr",
        "ma..rie@exemple.fr",
        '"marie"@exemple.fr',
        "marie@exemple.fr\x00",
        "ma\nrie@exemple.fr",
        "marie\x7f@exemple.fr",
        "marie@exem ple.fr",
        "marie@@exemple.fr",
        "Marie <marie@exemple.fr>",
        "a" * 65 + "@exemple.fr",
        "marie@" + "a" * 64 + ".fr",
        "",
    ],
)
def test_refused_addresses(address: str):
    assert normalize_email(address) is None


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("marie@exemple.fr", "marie@exemple.fr"),
        ("Marie.Dupont+chat@Exemple.FR", "Marie.Dupont+chat@exemple.fr"),
        ("o'neil@sous.domaine.co.uk", "o'neil@sous.domaine.co.uk"),
        ("marie@café.fr", "marie@xn--caf-dma.fr"),  # IDNA-encoded
    ],
)
def test_accepted_addresses_in_the_form_they_are_sent_to(address: str, kept: str):
    assert normalize_email(address) == kept
