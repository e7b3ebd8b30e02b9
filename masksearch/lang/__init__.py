"""The query language: grammar -> typed AST -> bound query."""
