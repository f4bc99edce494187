"""The living knowledge base: claims and evidence in SQL (the truth), Chroma vectors and a
networkx graph as rebuildable indexes, embedders, hybrid retrieval, the trust lifecycle."""
