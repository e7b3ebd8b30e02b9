"""Planning: a bound query becomes a physical plan of typed operators."""
