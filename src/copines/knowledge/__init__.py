"""Knowledge bases: ingestion (load, chunk, tag owner, embed, store) and retrieval."""
