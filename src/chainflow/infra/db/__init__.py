"""SQLAlchemy engine, declarative base, column types, units of work and migrations."""
