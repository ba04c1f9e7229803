"""External capabilities behind small interfaces: chat, embeddings, rerank."""
