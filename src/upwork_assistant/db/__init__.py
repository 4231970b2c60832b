"""Database: SQLAlchemy models, engine and sessions, Alembic migrations."""
