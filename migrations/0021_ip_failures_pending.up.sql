-- Attempts counted in ip_failures before they are decided. A sign-in or a
-- callback first takes a pending slot (refused once failures + pending reach
-- the limit) and then moves it to failures when its credentials were wrong,
-- or gives it back when they were right. So parallel attempts cannot overshoot
-- the limit, and a right attempt never counts as a failure.
ALTER TABLE ip_failures ADD COLUMN pending integer NOT NULL DEFAULT 0 CHECK (pending >= 0);
