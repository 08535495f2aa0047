"""The graph store on Neo4j 5+ through the official async driver (the driver is imported only by ``store`` and the
modules it is built from, so choosing another backend never loads it).

``store`` (the :class:`~memory.graph.base.GraphStore`), ``cypher`` (every statement, checked by tests/cypher),
``tx`` (how a statement is sent), ``writes``, ``traversal`` and ``maintenance`` (transaction functions), ``records``
(models ↔ parameter rows), ``config``.
"""
