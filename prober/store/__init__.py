"""SQLite storage behind named functions: open_engine, ResultWriter, queries."""
