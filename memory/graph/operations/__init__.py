"""The graph store's interface, one small ABC per concern; :class:`memory.graph.base.GraphStore` composes them.

- :mod:`~memory.graph.operations.memories` — writing, reading and updating memories (with the types they take);
- :mod:`~memory.graph.operations.entities` — entities and the memory-to-memory relationships;
- :mod:`~memory.graph.operations.traversal` — neighbours, graph search, supersession history;
- :mod:`~memory.graph.operations.users` — a user's whole graph: delete, export, import; the scopes there are;
- :mod:`~memory.graph.operations.change_log` — what followers (the vector index, replicas) read.

Import the interface's names from :mod:`memory.graph.base`, its public module.
"""
