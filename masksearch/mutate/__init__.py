"""Statements that change data: DELETE, UPDATE, ALTER TABLE, and metadata joined by key."""
