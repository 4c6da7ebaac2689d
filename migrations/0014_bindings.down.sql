DROP VIEW binding_eligible_users;
DROP TABLE kernel_event_registrations;
ALTER TABLE plan_bindings DROP CONSTRAINT plan_bindings_binding_fkey;
DROP TABLE protocol_entries;
DROP TABLE protocol_bindings;
