"""memproxy's long-term memory engine (vectors, graph store, recall, durable writes). Grows with the memory issue."""
