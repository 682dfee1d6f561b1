-- Retention is per app: an app's newest invocations are found by (app, id).
CREATE INDEX invocations_by_app_id ON invocations (app, id);
