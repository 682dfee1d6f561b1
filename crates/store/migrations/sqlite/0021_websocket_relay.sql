-- The tables PostgreSQL's nodes use to reach each other's WebSocket
-- connections (see migrations/postgres/0012_websocket_relay.sql). The
-- embedded database has one node, which holds every connection itself:
-- it never writes them. They exist so that both schemas stay alike.
CREATE TABLE ws_connections (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    node TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    opened_at INTEGER NOT NULL
);
CREATE INDEX ws_connections_app ON ws_connections (app, opened_at);
CREATE INDEX ws_connections_node ON ws_connections (node);

CREATE TABLE ws_relay (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX ws_relay_created ON ws_relay (created_at);

-- Metering of WebSockets per app and hour: functions' operations on
-- connections and channels (per function, like the other services), and
-- the connections' own time and messages (function '(websockets)').
ALTER TABLE usage_hourly ADD COLUMN realtime_ops BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_connection_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_messages_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN ws_messages_out BIGINT NOT NULL DEFAULT 0;
