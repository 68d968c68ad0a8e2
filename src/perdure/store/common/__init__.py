"""What the SQL stores share, whatever the database: row <-> record conversion, named-query
files, payload encoding done before a transaction opens, and queue options. Each backend
keeps only its SQL and its transaction and locking discipline."""
