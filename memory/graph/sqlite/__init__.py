"""The embedded graph store: SQLite from the standard library (the default backend).

``store`` (the :class:`~memory.graph.base.GraphStore`), ``connection`` (one connection, one worker thread), ``reads``
and ``writes`` (functions of a connection, inside one transaction), ``schema`` (every SQL statement), ``config``.
"""
