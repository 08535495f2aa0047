"""Graph store: the system of record (interface in base.py; SQLite and Neo4j backends)."""
