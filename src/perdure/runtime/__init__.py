"""The runtime: the only layer with loops, threads and the wall clock. It joins the core
(what a turn decides) and the store (where it is written)."""
