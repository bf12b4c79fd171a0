"""transforms of the collection; one module a paper."""
