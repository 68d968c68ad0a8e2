-- Migration 0008: an instance's end is signalled to other processes only if one watches it.
--
-- A commit that ends an instance sent a NOTIFY for the waits of other processes, and
-- PostgreSQL wakes every listening backend of the database for each NOTIFY, whatever its
-- channels: every worker process of a fleet paid for every instance end. A wait that
-- relies on other processes' signals now marks its instance watched first, and an end is
-- signalled only if its instance is watched. Adding a column with a constant default
-- writes nothing to the table's rows.

ALTER TABLE instances ADD COLUMN watched BOOLEAN NOT NULL DEFAULT false;
