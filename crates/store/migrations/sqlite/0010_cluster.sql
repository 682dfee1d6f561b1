-- Cluster coordination (the same table as on PostgreSQL, where nodes poll
-- it): a counter bumped whenever apps, revisions, configuration or keys
-- change. One node has nothing to tell, but the statements stay shared.

CREATE TABLE cluster_state (
    id         BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO cluster_state (id, generation) VALUES (1, 0);

-- The node holding a message's lease: a node that restarts takes back its
-- own leases at once; other nodes' run out.
ALTER TABLE messages ADD COLUMN lease_owner TEXT;

-- The nodes of the cluster, each seen at its last heartbeat: the live ones
-- split cluster-wide concurrency limits among themselves.
CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);

-- Periodic work done once for the whole cluster (sampling stored bytes):
-- when it was last done; a node does it only if it moves this forward.
CREATE TABLE samplers (
    name TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
