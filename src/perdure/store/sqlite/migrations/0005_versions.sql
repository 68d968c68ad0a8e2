-- Migration 0005: orchestration versions.
--
-- version: the version of the orchestration the current execution runs; NULL while a start
-- that left it open waits for its first turn (the worker that takes it records its own
-- latest). Instances created before versions existed run version 1.

ALTER TABLE instances ADD COLUMN version INTEGER;

UPDATE instances SET version = 1;
