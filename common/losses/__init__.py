"""losses of the collection; one module a paper."""
