-- Where each open WebSocket connection is held, for nodes sharing this
-- database: a send, close or subscription for a connection another node
-- holds goes to that node. A row is written at the connect and removed at
-- the close; a node's own rows are removed when it starts (it may have
-- stopped without removing them), and a dead node's are ignored.
CREATE TABLE ws_connections (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    node TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    opened_at BIGINT NOT NULL
);
CREATE INDEX ws_connections_app ON ws_connections (app, opened_at);
CREATE INDEX ws_connections_node ON ws_connections (node);

-- A relayed operation too large for a NOTIFY payload (8,000 bytes): the
-- notification carries its id, and the listening nodes read it here. Rows
-- are removed a minute after they were written.
CREATE TABLE ws_relay (
    id BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ws_relay_created ON ws_relay (created_at);

-- Metering of WebSockets per app and hour: functions' operations on
-- connections and channels (per function, like the other services), and
-- the connections' own time and messages (function '(websockets)').
ALTER TABLE usage_hourly ADD COLUMN realtime_ops BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_connection_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_messages_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_messages_out BIGINT NOT NULL DEFAULT 0;
