"""Graph store: the system of record. The interface in base.py, composed of one ABC per concern (operations/); a
folder per backend (sqlite/, neo4j/), registered in backends.py; what every backend does alike in paging.py,
validation.py and export_format.py."""
