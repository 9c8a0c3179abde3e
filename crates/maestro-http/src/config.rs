//! Settings of the HTTP layer. The binary reads them from flags and the environment
//! (`MAESTRO_API_TOKENS`, `MAESTRO_CORS_ORIGINS`, `MAESTRO_MAX_BODY_BYTES`, …); this crate never
//! reads the environment itself.

use std::time::Duration;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Bearer tokens accepted on `/api` routes; empty = no authentication.
    pub api_tokens: Vec<String>,
    /// Origins allowed by CORS (`*` allows any); empty = no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes (`MAESTRO_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// How long a client may take to send the request head (HTTP/1.1, slow-client defence).
    pub header_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown before connections are dropped.
    pub shutdown_grace: Duration,
    /// Default page size of list routes.
    pub default_page_size: usize,
    /// Largest page size of list routes.
    pub max_page_size: usize,
    /// How many compiled workflows the cache keeps.
    pub workflow_cache_capacity: usize,
    /// Most WebSockets open at once on this server (`MAESTRO_MAX_WEBSOCKETS`, default 1,000);
    /// past it an upgrade is refused with 503.
    pub max_websockets: usize,
    /// Most WebSockets open at once on one run or one workflow (default 100).
    pub max_websockets_per_key: usize,
    /// How often an open WebSocket is pinged (default 30 s).
    pub websocket_ping_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            api_tokens: Vec::new(),
            cors_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_json_depth: 64,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            default_page_size: 50,
            max_page_size: 500,
            workflow_cache_capacity: 1024,
            max_websockets: 1000,
            max_websockets_per_key: 100,
            websocket_ping_interval: Duration::from_secs(30),
        }
    }
}

impl HttpConfig {
    /// Sets the accepted bearer tokens (builder style); empty strings are ignored.
    pub fn with_api_tokens<I, S>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_tokens = tokens
            .into_iter()
            .map(Into::into)
            .filter(|t: &String| !t.is_empty())
            .collect();
        self
    }

    /// Sets the CORS origins (builder style).
    pub fn with_cors_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cors_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the body limit in bytes (builder style).
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the shutdown grace period (builder style).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the WebSocket limits: per server and per run or workflow (builder style).
    pub fn with_websocket_limits(mut self, per_server: usize, per_run_or_workflow: usize) -> Self {
        self.max_websockets = per_server;
        self.max_websockets_per_key = per_run_or_workflow;
        self
    }

    /// Parses a comma- or whitespace-separated list, as in `MAESTRO_API_TOKENS` or
    /// `MAESTRO_CORS_ORIGINS`.
    pub fn split_list(value: &str) -> Vec<String> {
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}
