-- Migration 0002: when an activity task's current lease was taken (perdure 0.1, diagnosis).
--
-- Diagnosis tells how long a running activity has been running from locked_at; the column
-- is set by lock_activities and cleared when the lease is released.

ALTER TABLE activity_tasks ADD COLUMN locked_at REAL;
