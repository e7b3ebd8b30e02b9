"""Planning: bounds of expressions and the logical plan of a statement."""
