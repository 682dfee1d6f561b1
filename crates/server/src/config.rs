//! `nimbus up`'s settings, one definition for the command line and for
//! in-process nodes ([`Config::from_args`] gives the same defaults).

use clap::{Args, Parser};
use std::path::PathBuf;

/// Server settings. Limits are in memory, time and counts, never hosts.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8080", env = "NIMBUS_LISTEN")]
    pub listen: String,
    /// Address of the console and the control API, an origin of their own
    /// where no app code runs (app pages keep reaching their user-pool and
    /// data endpoints on --listen) [default: loopback, the --listen port + 1,
    /// or a free port if that is 0]
    #[arg(long, env = "NIMBUS_CONTROL_LISTEN")]
    pub control_listen: Option<String>,
    /// Where state lives (SQLite database, components, compile cache, admin token)
    #[arg(long, default_value = ".nimbus", env = "NIMBUS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared by every node of a cluster
    /// (postgres://USER:PASSWORD@HOST:PORT/DATABASE) instead of the
    /// embedded SQLite file; its schema is brought up to date at start
    #[arg(long, env = "NIMBUS_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Files every node of a cluster must share (components, object
    /// bodies, the secret key, the admin token): a directory mounted on
    /// all of them [default: DATA_DIR]
    #[arg(long, env = "NIMBUS_SHARED_DIR")]
    pub shared_dir: Option<PathBuf>,
    /// Connections this node opens to PostgreSQL at most
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// How often a node checks whether another node changed apps,
    /// configuration or keys, in ms (PostgreSQL: a NOTIFY makes it sooner)
    #[arg(long, default_value_t = 1000)]
    pub cluster_poll_ms: u64,
    /// Compile cache directory [default: DATA_DIR/cache]
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Invocations in flight at once, platform-wide
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: u32,
    /// Invocations of one app in flight at once, across all its functions
    /// (its fair share: one app cannot take every slot), at most
    /// --max-in-flight; as many of its requests may wait for capacity
    #[arg(long, default_value_t = 250)]
    pub max_app_in_flight: u32,
    /// WebSocket connections this node holds at once, all apps together
    /// (beyond: the upgrade is refused with 503)
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// WebSocket connections one app may hold on this node at once
    #[arg(long, default_value_t = 5_000)]
    pub max_app_connections: usize,
    /// KiB that may wait to be written to one WebSocket connection; a
    /// client reading too slowly for that is cut off (1008)
    #[arg(long, default_value_t = 256)]
    pub ws_send_buffer_kb: usize,
    /// Seconds between pings of a WebSocket connection; one silent for two
    /// of these, or taking no write for one, is dropped
    #[arg(long, default_value_t = 30)]
    pub ws_ping_interval_s: u64,
    /// Longest timeout_ms (and first_byte_timeout_ms) a function may ask
    /// for, in ms; deploys asking for more are refused
    #[arg(long, default_value_t = 900_000)]
    pub max_timeout_ms: u64,
    /// Requests that may wait for capacity at once (beyond: 429)
    #[arg(long, default_value_t = 1000)]
    pub admission_queue: usize,
    /// How long a request may wait for capacity before a 429, in ms
    #[arg(long, default_value_t = 5000)]
    pub admission_timeout_ms: u64,
    /// Largest memory_mb a function may ask for
    #[arg(long, default_value_t = 1024)]
    pub max_memory_mb: u32,
    /// Largest component upload, in MiB
    #[arg(long, default_value_t = 64)]
    pub max_component_mb: u64,
    /// Compiled components kept in memory (LRU)
    #[arg(long, default_value_t = 1000)]
    pub loaded_capacity: usize,
    /// Bytes of stdout and of stderr kept per invocation, in KiB
    #[arg(long, default_value_t = 64)]
    pub log_limit_kb: usize,
    /// KiB of each pooled memory and table slot kept resident between
    /// instances (faster reuse, more resident memory)
    #[arg(long, default_value_t = 4096)]
    pub keep_resident_kb: usize,
    /// Unused instance slots kept warm for reuse (each keeps its dirtied pages resident)
    #[arg(long, default_value_t = 16)]
    pub warm_slots: u32,
    /// Invocation records and log entries kept per app (older ones are
    /// pruned app by app: one app's flood never evicts another's history)
    #[arg(long, default_value_t = 10_000)]
    pub keep_records: i64,
    /// Plain successful invocations (no logs, no events, no data calls)
    /// recorded per function and second; beyond it they are counted in
    /// usage and metrics but not stored one by one. Failures are always
    /// recorded
    #[arg(long, default_value_t = 100)]
    pub keep_successes_per_sec: u32,
    /// Request body kept for replaying a failed invocation, in KiB
    /// (credentials and secret values are never kept)
    #[arg(long, default_value_t = 256)]
    pub replay_body_kb: usize,
    /// Platform log lines on stderr: `text`, or `json` (one object per line)
    #[arg(long, default_value = "text", env = "NIMBUS_LOG_FORMAT")]
    pub log_format: String,
    /// Guest log entries older than this are pruned
    #[arg(long, default_value = "7d")]
    pub keep_logs_for: humantime::Duration,
    /// Guest log text kept per app, in MiB (its oldest entries go first)
    #[arg(long, default_value_t = 64)]
    pub keep_logs_mb: i64,
    /// Largest event payload (queue message, topic message, async
    /// invocation body), in KiB; a queue may set a lower limit
    #[arg(long, default_value_t = 1024)]
    pub max_message_kb: u64,
    /// How long succeeded events are kept for status queries, in seconds
    #[arg(long, default_value_t = 3600)]
    pub keep_events_secs: u64,
    /// Largest KV value or JSON document, in KiB; a KV store may set a lower limit
    #[arg(long, default_value_t = 1024)]
    pub max_value_kb: u64,
    /// Key-value data one app may store (keys and values, all its stores),
    /// in MiB; a write past it is refused with a clear error (0: no quota)
    #[arg(long, default_value_t = 1024)]
    pub quota_kv_mb: u64,
    /// JSON documents one app may store (their text, all collections), in
    /// MiB (0: no quota)
    #[arg(long, default_value_t = 1024)]
    pub quota_docs_mb: u64,
    /// Objects one app may store (all its buckets, unfinished multipart
    /// uploads included), in MiB; S3 answers QuotaExceeded past it (0: no
    /// quota)
    #[arg(long, default_value_t = 10 * 1024)]
    pub quota_objects_mb: u64,
    /// Address of the S3-compatible object storage endpoint (off if unset)
    #[arg(long, env = "NIMBUS_S3_LISTEN")]
    pub s3_listen: Option<String>,
    /// Domain of the S3 endpoint for virtual-hosted-style addressing:
    /// `BUCKET.DOMAIN` names the bucket (path-style addressing keeps
    /// working on every other host name). E.g. s3.example.com
    #[arg(long, env = "NIMBUS_S3_DOMAIN")]
    pub s3_domain: Option<String>,
    /// Largest object, in MiB (multipart uploads included)
    #[arg(long, default_value_t = 5 * 1024)]
    pub max_object_mb: u64,
    /// Price sheet (TOML: currency, per_gb_second, per_million_requests,
    /// per_million_operations, per_gb_month) for the cost estimates of
    /// `nimbus usage` [default: published AWS Lambda, DynamoDB and S3
    /// prices, as an example]
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Turn Prometheus metrics off (`/v1/metrics` answers 404)
    #[arg(long)]
    pub no_metrics: bool,
    /// Also serve `GET /metrics` without authentication on this address
    /// (for a Prometheus on the monitoring network; off if unset)
    #[arg(long, env = "NIMBUS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// How often each app's stored bytes (KV, documents, objects) are
    /// sampled for storage GB-hours, in seconds
    #[arg(long, default_value_t = 300)]
    pub storage_sample_secs: u64,
    /// Turn off everything Nimbus observes about invocations: records,
    /// guest logs, usage, metrics and traces. Only for measuring what they
    /// cost (bench/operate.sh); nothing can be debugged or billed then
    #[arg(long)]
    pub no_telemetry: bool,
    /// Export traces to an OpenTelemetry collector over OTLP/HTTP
    /// (protobuf), e.g. http://127.0.0.1:4318 (spans go to /v1/traces)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Address ranges functions' outbound HTTP may reach although they are
    /// loopback, private, link-local, CGNAT or this node's own addresses,
    /// which are refused whatever a manifest's allowed_outbound_hosts says
    /// (CIDRs or addresses; repeat the flag or separate with commas).
    /// Allowing this node's addresses lets functions call its listeners
    /// from inside, as a local client
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = cidr, env = "NIMBUS_ALLOW_EGRESS")]
    pub allow_egress: Vec<ipnet::IpNet>,
    /// Reverse proxies in front of this node (CIDRs or addresses; repeat
    /// or separate with commas): only for a connection from one of them is
    /// the client's address taken from X-Forwarded-For (the right-most
    /// address that is not itself a trusted proxy), for IP allow-lists,
    /// rate limits and per-address limits. Off by default: the TCP peer's
    /// address is the client's
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = cidr, env = "NIMBUS_TRUSTED_PROXY")]
    pub trusted_proxy: Vec<ipnet::IpNet>,
}

impl Config {
    /// The settings `nimbus up ARGS` would run with (flags only, as on its
    /// command line; the `NIMBUS_*` environment variables apply as there).
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Up {
            #[command(flatten)]
            config: Config,
        }
        let argv = std::iter::once(std::ffi::OsString::from("nimbus-up"))
            .chain(args.into_iter().map(Into::into));
        Up::try_parse_from(argv).map(|u| u.config)
    }
}

/// A `--allow-egress` or `--trusted-proxy` value: a CIDR or an address.
fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    nimbus_core::policy::parse_net(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_command_lines() {
        let c = Config::from_args(["--max-app-in-flight", "7"]).unwrap();
        assert_eq!(c.max_app_in_flight, 7);
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.max_timeout_ms, 900_000);
        let e = Config::from_args(["--allow-egress", "nonsense"]).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
    }
}
