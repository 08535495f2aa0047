"""The vector index: FAISS, partitioned by scope, derived from (and rebuildable from) the graph store."""
