//! The reliability suite's instruments: a counting HTTP endpoint that the `http` executor calls
//! (its record of calls is the side effect that proves how often a node ran), a seeded random
//! source, replicas of the real server on one PostgreSQL database, an audit trigger that records
//! which replica wrote what and when, a client that keeps submitting runs, and the checks every
//! scenario ends with. Every count here comes from the endpoint or from the database, never from
//! what the server says about itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{PgDatabase, Server, http_raw};

/// The lease time the fast scenarios give their replicas, in seconds.
pub(super) const TTL_SECS: u64 = 2;

/// The shutdown grace period of every replica (`MAESTRO_SHUTDOWN_GRACE_SECS`), in seconds.
pub(super) const GRACE_SECS: u64 = 5;

/// The takeover bound of DESIGN §9: lease TTL + 1 s.
pub(super) fn takeover_bound(ttl_secs: u64) -> Duration {
    Duration::from_secs(ttl_secs + 1)
}

/// Microseconds since the Unix epoch: the unit in which the database's timestamps are compared
/// with the test's clock (one machine, one clock).
pub(super) fn micros(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap())
}

/// The time from `earlier` to `later`; zero when `later` is not later.
pub(super) fn since(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// An environment setting, or `default`.
pub(super) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ---- seeded randomness -------------------------------------------------------------------------

/// SplitMix64, seeded from `MAESTRO_RELIABILITY_SEED` or the clock; the seed is printed so that
/// a failure's fault schedule (when and whom to kill) can be replayed.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn seeded(test: &str) -> Self {
        let seed = std::env::var("MAESTRO_RELIABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with MAESTRO_RELIABILITY_SEED={seed})");
        Self(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A duration in `lo..=hi`, to the millisecond.
    pub(super) fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis() as usize + 1;
        lo + Duration::from_millis(self.below(span) as u64)
    }
}

// ---- the counting endpoint ---------------------------------------------------------------------

/// One call the `http` executor made.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) run_id: String,
    pub(super) node_id: String,
    /// 1, 2, 3… in the order the calls arrived; the answer's `call` field.
    pub(super) seq: u64,
    /// When the whole request had arrived.
    pub(super) at: SystemTime,
}

/// An HTTP endpoint on a thread that records every call (run and node from the node input the
/// executor sends as its body) and answers `{"call": SEQ}` after the delay in its path
/// (`/work/MS`), or once the test opens its gate (`/gate`), so a node's stored output names the
/// very call that produced it.
pub(super) struct Counter {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    gate: Arc<Gate>,
}

/// Holds the answers to `/gate` calls until it is opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Counter {
    pub(super) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Gate::default());
        let (shared, shared_gate) = (calls.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (calls, gate) = (shared.clone(), shared_gate.clone());
                std::thread::spawn(move || serve_connection(stream, &calls, &gate));
            }
        });
        Self { addr, calls, gate }
    }

    /// The URL of a call answered once [`Counter::open_gate`] is called.
    pub(super) fn gated_url(&self) -> String {
        format!("http://{}/gate", self.addr)
    }

    /// Answers every call to the gated URL, waiting or to come, at once.
    pub(super) fn open_gate(&self) {
        *self.gate.open.lock().unwrap() = true;
        self.gate.opened.notify_all();
    }

    /// The URL of a call answered after `delay_ms`.
    pub(super) fn url(&self, delay_ms: u64) -> String {
        format!("http://{}/work/{delay_ms}", self.addr)
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of every (run, node), in arrival order.
    pub(super) fn by_node(&self) -> HashMap<(String, String), Vec<Call>> {
        let mut map: HashMap<(String, String), Vec<Call>> = HashMap::new();
        for c in self.calls() {
            map.entry((c.run_id.clone(), c.node_id.clone()))
                .or_default()
                .push(c);
        }
        map
    }
}

/// Serves one keep-alive connection: request after request until the client closes it.
fn serve_connection(mut stream: TcpStream, calls: &Mutex<Vec<Call>>, gate: &Gate) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = |buf: &mut Vec<u8>, stream: &mut TcpStream| match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    };
    loop {
        let (head_end, len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, len);
            }
            if !fill(&mut buf, &mut stream) {
                return;
            }
        };
        while buf.len() < head_end + len {
            if !fill(&mut buf, &mut stream) {
                return;
            }
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let input: Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
        buf.drain(..head_end + len);
        let delay = head
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/work/"))
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0);
        let seq = {
            let mut calls = calls.lock().unwrap();
            let seq = calls.len() as u64 + 1;
            calls.push(Call {
                run_id: input["run_id"].as_str().unwrap_or_default().to_string(),
                node_id: input["node_id"].as_str().unwrap_or_default().to_string(),
                seq,
                at: SystemTime::now(),
            });
            seq
        };
        if head.split_whitespace().nth(1) == Some("/gate") {
            let mut open = gate.open.lock().unwrap();
            while !*open {
                open = gate.opened.wait(open).unwrap();
            }
        } else if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let body = json!({ "call": seq }).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || head.contains("connection: close") {
            return;
        }
    }
}

// ---- replicas ----------------------------------------------------------------------------------

/// One `maestro-server` process. Its name is its `HOSTNAME` (so its lease owner ids are
/// `NAME-xxxxxxxx`) and its PostgreSQL `application_name` (so the audit names its writes).
pub(super) struct Replica {
    pub(super) name: String,
    pub(super) server: Server,
}

impl Replica {
    /// Starts the process without waiting for it.
    pub(super) fn spawn(db: &PgDatabase, name: &str, ttl_secs: u64) -> Self {
        let url = format!("{}?application_name={name}", db.url);
        let ttl = ttl_secs.to_string();
        let grace = GRACE_SECS.to_string();
        let server = Server::spawn(
            &url,
            &[
                ("HOSTNAME", name),
                ("MAESTRO_LEASE_TTL_SECS", &ttl),
                ("MAESTRO_SHUTDOWN_GRACE_SECS", &grace),
            ],
        );
        Self {
            name: name.to_string(),
            server,
        }
    }

    /// Waits until the replica is ready (migrations ran, the database answers).
    pub(super) fn ready(&self) {
        self.server
            .wait_for("/health/ready", 200, Duration::from_secs(60));
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Sends `SIG` (`STOP`, `CONT`, …) with `kill`.
    pub(super) fn signal(&self, sig: &str) {
        let pid = self.server.pid().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} {pid}");
    }
}

/// Starts replicas named `names` at once, then waits until every one is ready.
pub(super) fn start_replicas(db: &PgDatabase, names: &[&str], ttl_secs: u64) -> Vec<Replica> {
    let replicas: Vec<Replica> = names
        .iter()
        .map(|n| Replica::spawn(db, n, ttl_secs))
        .collect();
    for r in &replicas {
        r.ready();
    }
    replicas
}

/// Stores `definitions` through `server`.
pub(super) fn create_workflows(server: &Server, definitions: &[Value]) {
    for d in definitions {
        let r = server.request("POST", "/api/v1/workflows", Some(d));
        assert!(
            matches!(r.status, 200 | 201),
            "creating {}: {} {}",
            d["id"],
            r.status,
            r.text()
        );
    }
}

// ---- the audit ---------------------------------------------------------------------------------

/// Installs triggers that record, with the database's clock and the writer's `application_name`
/// (the replica's name), every lease claim or release and every write batch on `runs`, every
/// write of a node's state and every event appended. Renewals (only `lease_expires_at` moves)
/// are left out. Needs the tables, so it runs once a replica has migrated.
pub(super) fn install_audit(db: &PgDatabase) {
    db.query(
        "CREATE TABLE reliability_audit (
             id     BIGSERIAL PRIMARY KEY,
             at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
             app    TEXT NOT NULL DEFAULT current_setting('application_name'),
             tbl    TEXT NOT NULL,
             run_pk BIGINT NOT NULL,
             node_id TEXT,
             what   TEXT,
             epoch  BIGINT,
             owner  TEXT
         );
         CREATE FUNCTION reliability_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF TG_TABLE_NAME = 'runs' THEN
                 INSERT INTO reliability_audit (tbl, run_pk, what, epoch, owner)
                 VALUES ('runs', NEW.id, NEW.status, NEW.epoch, NEW.lease_owner);
             ELSIF TG_TABLE_NAME = 'node_states' THEN
                 INSERT INTO reliability_audit (tbl, run_pk, node_id, what)
                 VALUES ('node_states', NEW.run_pk, NEW.node_id, NEW.status);
             ELSE
                 INSERT INTO reliability_audit (tbl, run_pk, node_id, what, epoch)
                 VALUES ('run_events', NEW.run_pk, NEW.node_id, NEW.type, NEW.seq);
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER reliability_audit_runs AFTER UPDATE ON runs FOR EACH ROW
             WHEN (OLD.epoch IS DISTINCT FROM NEW.epoch
                   OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner
                   OR OLD.status IS DISTINCT FROM NEW.status
                   OR OLD.last_seq IS DISTINCT FROM NEW.last_seq)
             EXECUTE FUNCTION reliability_audit();
         CREATE TRIGGER reliability_audit_nodes AFTER INSERT OR UPDATE ON node_states
             FOR EACH ROW EXECUTE FUNCTION reliability_audit();
         CREATE TRIGGER reliability_audit_events AFTER INSERT ON run_events
             FOR EACH ROW EXECUTE FUNCTION reliability_audit();",
    );
}

/// A run a replica held when it failed: its surrogate key, id and lease epoch at that moment.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) pk: i64,
    pub(super) run_id: String,
    pub(super) epoch: i64,
}

/// The unfinished runs whose lease `replica` holds.
pub(super) fn held_runs(db: &PgDatabase, replica: &str) -> Vec<Held> {
    db.query(&format!(
        "SELECT id, run_id, epoch FROM runs WHERE lease_owner LIKE '{replica}-%' \
         AND status IN ('pending', 'running', 'paused') ORDER BY id"
    ))
    .iter()
    .map(|row| {
        let f: Vec<&str> = row.split('|').collect();
        Held {
            pk: f[0].parse().unwrap(),
            run_id: f[1].to_string(),
            epoch: f[2].parse().unwrap(),
        }
    })
    .collect()
}

/// Waits until every run in `held` has a newer lease than it had, then returns, per run, when
/// that lease was taken: the claim's time in the audit when `audited`, else the moment the
/// poll saw it (50 ms resolution).
pub(super) fn wait_takeover(
    db: &PgDatabase,
    held: &[Held],
    audited: bool,
    within: Duration,
) -> HashMap<i64, SystemTime> {
    let mut seen: HashMap<i64, SystemTime> = HashMap::new();
    if held.is_empty() {
        return seen;
    }
    let pks: Vec<String> = held.iter().map(|h| h.pk.to_string()).collect();
    let old: HashMap<i64, i64> = held.iter().map(|h| (h.pk, h.epoch)).collect();
    let deadline = Instant::now() + within;
    while seen.len() < held.len() {
        let now = SystemTime::now();
        for row in db.query(&format!(
            "SELECT id, epoch FROM runs WHERE id IN ({})",
            pks.join(",")
        )) {
            let (pk, epoch) = row.split_once('|').unwrap();
            let (pk, epoch): (i64, i64) = (pk.parse().unwrap(), epoch.parse().unwrap());
            if epoch > old[&pk] {
                seen.entry(pk).or_insert(now);
            }
        }
        if seen.len() == held.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs not taken over within {within:?}: {:?}",
            held.iter()
                .filter(|h| !seen.contains_key(&h.pk))
                .map(|h| &h.run_id)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if audited {
        let values: Vec<String> = held
            .iter()
            .map(|h| format!("({}, {})", h.pk, h.epoch))
            .collect();
        for row in db.query(&format!(
            "SELECT a.run_pk, (extract(epoch FROM min(a.at)) * 1000000)::bigint \
             FROM reliability_audit a JOIN (VALUES {}) AS v(pk, epoch) \
               ON a.run_pk = v.pk AND a.epoch > v.epoch \
             WHERE a.tbl = 'runs' GROUP BY a.run_pk",
            values.join(", ")
        )) {
            let (pk, us) = row.split_once('|').unwrap();
            seen.insert(pk.parse().unwrap(), from_micros(us.parse().unwrap()));
        }
    }
    seen
}

/// Rows of the audit written by `app` on the runs in `taken`, each after that run's takeover,
/// as text.
pub(super) fn writes_after_takeover(
    db: &PgDatabase,
    app: &str,
    taken: &HashMap<i64, SystemTime>,
) -> Vec<String> {
    if taken.is_empty() {
        return Vec::new();
    }
    let values: Vec<String> = taken
        .iter()
        .map(|(pk, at)| format!("({pk}, {})", micros(*at)))
        .collect();
    db.query(&format!(
        "SELECT a.tbl || ' run_pk=' || a.run_pk || ' node=' || coalesce(a.node_id, '-') || ' ' \
                || coalesce(a.what, '') || ' at ' || a.at \
         FROM reliability_audit a JOIN (VALUES {}) AS v(pk, taken_us) ON a.run_pk = v.pk \
         WHERE a.app = '{app}' AND (extract(epoch FROM a.at) * 1000000)::bigint >= v.taken_us \
         ORDER BY a.id",
        values.join(", ")
    ))
}

// ---- faults ------------------------------------------------------------------------------------

/// Runs whose lease was released while they were still active (`lease_owner` NULL with status
/// `pending` or `running`, per the audit), except by a replica after its SIGTERM (`draining`:
/// replica name → when it got the signal; a drain hands its runs over so). Nothing else lets an
/// active run go in the scenarios that check this: a run's lease is released by its terminal
/// write, by a drain, or not at all (it expires, or another replica takes it over). (A replica
/// also gives back a lease it has just claimed on a run whose old driver it is still stopping,
/// which needs a replica to lose a lease while it lives: a stall or an outage past the lease.)
/// The adoption race that `adoption.rs` reproduces did, before it was fixed.
pub(super) fn released_while_active(
    db: &PgDatabase,
    draining: &HashMap<String, SystemTime>,
) -> Vec<String> {
    let mut runs: Vec<String> = db
        .query(
            "SELECT r.run_id, a.app, (extract(epoch FROM a.at) * 1000000)::bigint \
             FROM reliability_audit a JOIN runs r ON r.id = a.run_pk \
             WHERE a.tbl = 'runs' AND a.owner IS NULL AND a.what IN ('pending', 'running')",
        )
        .iter()
        .filter_map(|row| {
            let f: Vec<&str> = row.split('|').collect();
            let at = from_micros(f[2].parse().unwrap());
            let drained = draining.get(f[1]).is_some_and(|t| at >= *t);
            (!drained).then(|| f[0].to_string())
        })
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

/// The (run, node) pairs `running` under a lease of `replica`, per the database now.
fn running_on(db: &PgDatabase, replica: &str) -> Vec<(String, String)> {
    db.query(&format!(
        "SELECT r.run_id, n.node_id FROM node_states n JOIN runs r ON r.id = n.run_pk \
         WHERE r.lease_owner LIKE '{replica}-%' AND n.status = 'running'"
    ))
    .iter()
    .map(|row| {
        let (run, node) = row.split_once('|').unwrap();
        (run.to_string(), node.to_string())
    })
    .collect()
}

/// A SIGTERM sent to a replica: what it had in flight then, to be judged once it has exited.
#[derive(Debug)]
pub(super) struct Sigterm {
    replica: String,
    at: SystemTime,
    running: Vec<(String, String)>,
}

/// What a fault allows and forbids afterwards.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// (run, node) in flight when their replica died, was stopped, or drained past its grace
    /// period, or when the database went away, with how many such faults hit them: each may
    /// cost one more execution (at-least-once per attempt).
    pub(super) in_flight: HashMap<(String, String), usize>,
    /// (run, node) the database had as completed at a fault, with the moment it was read (the
    /// end of the query): never executed again after it.
    pub(super) completed: HashMap<(String, String), SystemTime>,
    /// Drains whose grace period ran out (replica, attempts allowed to run again).
    pub(super) graceless: Vec<(String, usize)>,
}

impl Faults {
    /// Sends SIGTERM to `replica` and records what it has in flight: call right before
    /// [`Faults::after_sigterm`] once the replica has exited.
    pub(super) fn sigterm(db: &PgDatabase, replica: &Replica) -> Sigterm {
        let at = SystemTime::now();
        replica.server.sigterm();
        Sigterm {
            replica: replica.name.clone(),
            at,
            running: running_on(db, &replica.name),
        }
    }

    /// Judges a drain once the replica has exited, `drained` after its SIGTERM. A drain lets
    /// every attempt in flight finish within the grace period ([`GRACE_SECS`]) and records its
    /// result, so no node runs again; only when the grace ran out (the drain took that long) may
    /// an attempt the replica had in flight at the signal, and did not record as ended, run once
    /// more elsewhere. Needs the audit.
    pub(super) fn after_sigterm(&mut self, db: &PgDatabase, term: Sigterm, drained: Duration) {
        if drained < Duration::from_secs(GRACE_SECS) {
            return;
        }
        let ended: HashSet<(String, String)> = db
            .query(&format!(
                "SELECT r.run_id, a.node_id \
                 FROM reliability_audit a JOIN runs r ON r.id = a.run_pk \
                 WHERE a.tbl = 'node_states' AND a.app = '{}' \
                   AND a.what IN ('completed', 'failed', 'skipped', 'cancelled') \
                   AND (extract(epoch FROM a.at) * 1000000)::bigint >= {}",
                term.replica,
                micros(term.at)
            ))
            .iter()
            .map(|row| {
                let (run, node) = row.split_once('|').unwrap();
                (run.to_string(), node.to_string())
            })
            .collect();
        let mut allowed = 0;
        for key in term.running {
            if !ended.contains(&key) {
                *self.in_flight.entry(key).or_default() += 1;
                allowed += 1;
            }
        }
        self.graceless.push((term.replica, allowed));
    }

    /// Records the database's view right after `replica` was killed (or stopped).
    pub(super) fn after_kill(&mut self, db: &PgDatabase, replica: &str) {
        for key in running_on(db, replica) {
            *self.in_flight.entry(key).or_default() += 1;
        }
        self.completed_now(db);
    }

    /// Records the database's view right before it goes away: every node not completed yet may
    /// be in flight when it does.
    pub(super) fn before_outage(&mut self, db: &PgDatabase) {
        for row in db.query(
            "SELECT r.run_id, n.node_id FROM node_states n JOIN runs r ON r.id = n.run_pk \
             WHERE n.status <> 'completed'",
        ) {
            let (run, node) = row.split_once('|').unwrap();
            *self
                .in_flight
                .entry((run.to_string(), node.to_string()))
                .or_default() += 1;
        }
        self.completed_now(db);
    }

    fn completed_now(&mut self, db: &PgDatabase) {
        let rows = db.query(
            "SELECT r.run_id, n.node_id FROM node_states n JOIN runs r ON r.id = n.run_pk \
             WHERE n.status = 'completed'",
        );
        let at = SystemTime::now();
        for row in rows {
            let (run, node) = row.split_once('|').unwrap();
            self.completed
                .entry((run.to_string(), node.to_string()))
                .or_insert(at);
        }
    }
}

// ---- the client --------------------------------------------------------------------------------

/// The replicas a client may talk to; scenarios swap addresses as replicas come and go.
pub(super) type Addrs = Arc<Mutex<Vec<SocketAddr>>>;

/// What a client saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Every run it submitted, by the id the server answered.
    pub(super) runs: Vec<String>,
    /// Responses by status code.
    pub(super) statuses: BTreeMap<u16, usize>,
    /// Connections refused, reset or timed out (each followed by a move to another replica).
    pub(super) connection_errors: usize,
    /// Responses other than the expected ones and 503, with their bodies.
    pub(super) unexpected: Vec<String>,
}

impl Seen {
    fn merge(&mut self, other: Self) {
        self.runs.extend(other.runs);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.connection_errors += other.connection_errors;
        self.unexpected.extend(other.unexpected);
    }

    /// 5xx answers other than 503.
    pub(super) fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|&(&s, _)| s >= 500 && s != 503)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One request of a client.
#[derive(Clone, Copy)]
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    body: Option<&'a Value>,
    headers: &'a [(&'a str, &'a str)],
}

/// Sends one request, moving to the next replica on 503 or a connection error, until one of
/// `ok` answers (a minute at most). `start` picks the first replica.
fn send(addrs: &Addrs, start: usize, req: &Req<'_>, ok: &[u16], seen: &mut Seen) -> Value {
    let Req {
        method,
        path,
        body,
        headers,
    } = *req;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut all = Vec::new();
    if !body.is_empty() {
        all.push(("Content-Type", "application/json"));
    }
    all.extend_from_slice(headers);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = start;
    loop {
        let addr = {
            let addrs = addrs.lock().unwrap();
            addrs[i % addrs.len()]
        };
        i += 1;
        match http_raw(addr, method, path, body.as_bytes(), &all) {
            Ok(r) => {
                *seen.statuses.entry(r.status).or_default() += 1;
                if ok.contains(&r.status) {
                    return r.json();
                }
                if r.status != 503 {
                    seen.unexpected
                        .push(format!("{method} {path} → {} {}", r.status, r.text()));
                }
            }
            Err(_) => seen.connection_errors += 1,
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path}: no replica answered within a minute; {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a run of `workflow` with an idempotency key, so that a retry on another replica after
/// a lost answer never starts it twice.
pub(super) fn submit(addrs: &Addrs, start: usize, workflow: &str, key: &str, seen: &mut Seen) {
    let answer = send(
        addrs,
        start,
        &Req {
            method: "POST",
            path: &format!("/api/v1/workflows/{workflow}/runs"),
            body: Some(&json!({"inputs": {"key": key}})),
            headers: &[("Idempotency-Key", key)],
        },
        &[200, 201, 202],
        seen,
    );
    let run_id = answer["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id: {answer}"))
        .to_string();
    seen.runs.push(run_id);
}

/// Clients that keep submitting runs until stopped.
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Seen>>,
}

/// How a [`Load`] behaves.
pub(super) struct LoadOptions {
    /// Client threads.
    pub(super) clients: usize,
    /// Pause between two submissions of one client.
    pub(super) interval: Duration,
    /// Also read an earlier run back after each submission (`GET /api/v1/runs/{id}`).
    pub(super) poll: bool,
    /// Stop after this many submissions in all.
    pub(super) limit: usize,
    /// Wait while this many runs or more are submitted and not yet ended (per the database, read
    /// by [`count_ended`]).
    pub(super) window: Option<(usize, Arc<AtomicUsize>)>,
}

impl Load {
    pub(super) fn start(addrs: &Addrs, workflows: &[&str], options: LoadOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let submitted = Arc::new(AtomicUsize::new(0));
        let workflows: Vec<String> = workflows.iter().map(|w| w.to_string()).collect();
        let options = Arc::new(options);
        let threads = (0..options.clients)
            .map(|client| {
                let (addrs, stop, submitted, workflows, options) = (
                    addrs.clone(),
                    stop.clone(),
                    submitted.clone(),
                    workflows.clone(),
                    options.clone(),
                );
                std::thread::spawn(move || {
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some((window, ended)) = &options.window
                            && submitted
                                .load(Ordering::Relaxed)
                                .saturating_sub(ended.load(Ordering::Relaxed))
                                >= *window
                        {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        let n = submitted.fetch_add(1, Ordering::Relaxed);
                        if n >= options.limit {
                            submitted.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        let workflow = &workflows[n % workflows.len()];
                        submit(&addrs, n, workflow, &format!("load-{n}"), &mut seen);
                        if options.poll {
                            let run_id = seen.runs[seen.runs.len() / 2].clone();
                            send(
                                &addrs,
                                n + client,
                                &Req {
                                    method: "GET",
                                    path: &format!("/api/v1/runs/{run_id}"),
                                    body: None,
                                    headers: &[],
                                },
                                &[200],
                                &mut seen,
                            );
                        }
                        std::thread::sleep(options.interval);
                    }
                    seen
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Waits until the clients have made their `limit` submissions; returns what they saw.
    pub(super) fn finish_when_done(self) -> Seen {
        let mut all = Seen::default();
        for t in self.threads {
            all.merge(t.join().expect("a client thread panicked"));
        }
        all
    }

    /// Stops the clients and returns what they saw.
    pub(super) fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for t in self.threads {
            all.merge(t.join().expect("a client thread panicked"));
        }
        all
    }
}

/// Updates `ended` with the number of runs that ended, every 200 ms, until `stop`.
pub(super) fn count_ended(db_url: String, ended: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let out = std::process::Command::new("psql")
                .args([
                    db_url.as_str(),
                    "-qtA",
                    "-c",
                    "SELECT count(*) FROM runs \
                     WHERE status IN ('completed', 'failed', 'cancelled')",
                ])
                .output();
            if let Ok(out) = out
                && let Ok(n) = String::from_utf8_lossy(&out.stdout).trim().parse()
            {
                ended.store(n, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

/// Waits until the database holds `expected` runs and every one has ended; returns how long.
pub(super) fn wait_all_ended(db: &PgDatabase, expected: usize, within: Duration) -> Duration {
    let since = Instant::now();
    loop {
        let row = db.query(
            "SELECT count(*), \
                    count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')) \
             FROM runs",
        );
        let (total, ended) = row[0].split_once('|').unwrap();
        let (total, ended): (usize, usize) = (total.parse().unwrap(), ended.parse().unwrap());
        if total == expected && ended == total {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{ended} of {total} runs ended (expected {expected}) after {within:?}: {:?}",
            db.query(
                "SELECT run_id || ' ' || status || ' ' || coalesce(lease_owner, '-') FROM runs \
                 WHERE status NOT IN ('completed', 'failed', 'cancelled') LIMIT 10"
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- the checks --------------------------------------------------------------------------------

/// Totals of a checked scenario.
#[derive(Debug, Default)]
pub(super) struct Figures {
    pub(super) runs: usize,
    /// Node states, all completed.
    pub(super) nodes: usize,
    /// Calls of `http` nodes the counting endpoint received.
    pub(super) http_calls: usize,
    /// `http` nodes executed more than once (each was in flight at a fault).
    pub(super) executed_twice: usize,
    /// `http` nodes that were completed at a fault and executed again: must be 0.
    pub(super) completed_rerun: usize,
    pub(super) events: usize,
}

/// A node's stored status, the `call` of its output and its `finished_at` (µs).
type NodeRow = (String, Option<u64>, Option<i64>);

/// Checks everything the database and the counting endpoint hold after a scenario:
/// - the runs are exactly `submitted`, and every one completed;
/// - every node of its definition is there and completed, its output names one of its calls;
/// - every `http` node was called once, plus once per fault it was in flight at, and never
///   after the database had it completed (neither after its `finished_at` nor after a fault at
///   which it was completed);
/// - every run's events are numbered 1..=last_seq without a gap, with one `workflow_started`,
///   one `node_completed` per node and one `workflow_completed`, last.
pub(super) fn verify(
    db: &PgDatabase,
    counter: &Counter,
    definitions: &[Value],
    submitted: &[String],
    faults: &Faults,
) -> Figures {
    let mut problems: Vec<String> = Vec::new();
    let shapes: HashMap<String, Vec<(String, bool)>> = definitions
        .iter()
        .map(|d| {
            let nodes = d["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    (
                        n["id"].as_str().unwrap().to_string(),
                        n["executor"] == "http",
                    )
                })
                .collect();
            (d["id"].as_str().unwrap().to_string(), nodes)
        })
        .collect();

    // Runs.
    let runs: HashMap<String, (String, String, u64)> = db
        .query("SELECT run_id, workflow_id, status, last_seq FROM runs")
        .iter()
        .map(|row| {
            let f: Vec<&str> = row.split('|').collect();
            (
                f[0].to_string(),
                (f[1].to_string(), f[2].to_string(), f[3].parse().unwrap()),
            )
        })
        .collect();
    let wanted: HashSet<&String> = submitted.iter().collect();
    if wanted.len() != submitted.len() {
        problems.push(format!(
            "{} submissions answered with an earlier run's id",
            submitted.len() - wanted.len()
        ));
    }
    for id in &wanted {
        if !runs.contains_key(*id) {
            problems.push(format!("run {id} was accepted but is not in the database"));
        }
    }
    for (id, (_, status, _)) in &runs {
        if !wanted.contains(id) {
            problems.push(format!(
                "run {id} is in the database but was never submitted"
            ));
        }
        if status != "completed" {
            problems.push(format!("run {id} ended {status}"));
        }
    }

    // Nodes.
    let mut nodes: HashMap<(String, String), NodeRow> = HashMap::new();
    for row in db.query(
        "SELECT r.run_id, n.node_id, n.status, coalesce(n.output->>'call', ''), \
                coalesce((extract(epoch FROM n.finished_at) * 1000000)::bigint::text, '') \
         FROM node_states n JOIN runs r ON r.id = n.run_pk",
    ) {
        let f: Vec<&str> = row.split('|').collect();
        nodes.insert(
            (f[0].to_string(), f[1].to_string()),
            (f[2].to_string(), f[3].parse().ok(), f[4].parse().ok()),
        );
    }

    // Executions.
    let calls = counter.by_node();
    let mut figures = Figures {
        runs: runs.len(),
        nodes: nodes.len(),
        http_calls: counter.calls().len(),
        ..Figures::default()
    };
    for (run_id, (workflow, _, _)) in &runs {
        let Some(shape) = shapes.get(workflow) else {
            problems.push(format!("run {run_id} of unknown workflow {workflow}"));
            continue;
        };
        for (node, http) in shape {
            let key = (run_id.clone(), node.clone());
            let Some((status, output_call, finished_us)) = nodes.get(&key) else {
                problems.push(format!("{run_id}/{node} has no state"));
                continue;
            };
            if status != "completed" {
                problems.push(format!("{run_id}/{node} is {status}"));
            }
            if !http {
                continue;
            }
            let made = calls.get(&key).map_or(&[][..], Vec::as_slice);
            let allowed = 1 + faults.in_flight.get(&key).copied().unwrap_or(0);
            if made.is_empty() || made.len() > allowed {
                problems.push(format!(
                    "{run_id}/{node} executed {} times (allowed: {allowed}), calls at {:?} µs",
                    made.len(),
                    made.iter().map(|m| micros(m.at)).collect::<Vec<_>>()
                ));
            }
            if made.len() > 1 {
                figures.executed_twice += 1;
            }
            if !output_call.is_some_and(|c| made.iter().any(|m| m.seq == c)) {
                problems.push(format!(
                    "{run_id}/{node}: output call {output_call:?} is none of its calls {:?}",
                    made.iter().map(|m| m.seq).collect::<Vec<_>>()
                ));
            }
            let done_at = finished_us.map(|us| from_micros(us + 1000));
            let fault_done = faults.completed.get(&key).copied();
            for m in made {
                let after_finish = done_at.is_some_and(|d| m.at > d);
                let after_fault = fault_done.is_some_and(|d| m.at > d);
                if after_finish || after_fault {
                    figures.completed_rerun += 1;
                    problems.push(format!(
                        "{run_id}/{node} executed again (call {} at {} µs) after the database had \
                         it completed (finished_at {:?} µs, completed at a fault at {:?} µs)",
                        m.seq,
                        micros(m.at),
                        finished_us,
                        fault_done.map(micros)
                    ));
                }
            }
        }
    }

    // Events.
    let mut logs: HashMap<String, Vec<(u64, String, String)>> = HashMap::new();
    for row in db.query(
        "SELECT r.run_id, e.seq, e.type, coalesce(e.node_id, '') \
         FROM run_events e JOIN runs r ON r.id = e.run_pk ORDER BY r.id, e.seq",
    ) {
        let f: Vec<&str> = row.split('|').collect();
        logs.entry(f[0].to_string()).or_default().push((
            f[1].parse().unwrap(),
            f[2].to_string(),
            f[3].to_string(),
        ));
        figures.events += 1;
    }
    for (run_id, (workflow, _, last_seq)) in &runs {
        let log = logs.get(run_id).map_or(&[][..], Vec::as_slice);
        let seqs: Vec<u64> = log.iter().map(|e| e.0).collect();
        if seqs != (1..=*last_seq).collect::<Vec<_>>() {
            problems.push(format!(
                "{run_id}: event seqs are not 1..={last_seq} without gaps: {seqs:?}"
            ));
        }
        let count =
            |kind: &str, node: &str| log.iter().filter(|e| e.1 == kind && e.2 == node).count();
        for kind in ["workflow_started", "workflow_completed"] {
            if count(kind, "") != 1 {
                problems.push(format!("{run_id}: {} × {kind}", count(kind, "")));
            }
        }
        if log.last().is_none_or(|e| e.1 != "workflow_completed") {
            problems.push(format!(
                "{run_id}: the log does not end with workflow_completed"
            ));
        }
        for (node, _) in shapes.get(workflow).map_or(&[][..], Vec::as_slice) {
            if count("node_completed", node) != 1 {
                problems.push(format!(
                    "{run_id}: {} × node_completed of {node}",
                    count("node_completed", node)
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems (first 30):\n{}\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        history(db, counter, &problems, &runs)
    );
    figures
}

/// For a failure report: what the audit (when installed) and the counter hold about the first
/// three runs named in `problems`.
fn history(
    db: &PgDatabase,
    counter: &Counter,
    problems: &[String],
    runs: &HashMap<String, (String, String, u64)>,
) -> String {
    let mut named: Vec<&str> = Vec::new();
    for p in problems {
        let id = p
            .trim_start_matches("run ")
            .split(['/', ':', ' '])
            .next()
            .unwrap_or_default();
        if runs.contains_key(id) && !named.contains(&id) {
            named.push(id);
        }
    }
    history_of(db, counter, &named)
}

/// For a failure report: what the audit (when installed) and the counter hold about the first
/// three of `runs`.
pub(super) fn history_of(db: &PgDatabase, counter: &Counter, runs: &[&str]) -> String {
    let audited = db.query("SELECT to_regclass('reliability_audit') IS NOT NULL") == ["t"];
    let mut out = String::new();
    for id in runs.iter().take(3) {
        out.push_str(&format!("history of {id} (µs since the epoch):\n"));
        if audited {
            for row in db.query(&format!(
                "SELECT (extract(epoch FROM a.at) * 1000000)::bigint, a.app, a.tbl, \
                        coalesce(a.node_id, '-'), a.what, coalesce(a.epoch::text, '-'), \
                        coalesce(a.owner, '-') \
                 FROM reliability_audit a JOIN runs r ON r.id = a.run_pk \
                 WHERE r.run_id = '{id}' ORDER BY a.id"
            )) {
                out.push_str(&format!("  db   {row}\n"));
            }
        }
        for c in counter.calls().iter().filter(|c| c.run_id == *id) {
            out.push_str(&format!(
                "  call {}|{}|seq {}\n",
                micros(c.at),
                c.node_id,
                c.seq
            ));
        }
    }
    out
}

/// The median and the maximum of `values`.
pub(super) fn median_max(values: &[Duration]) -> (Duration, Duration) {
    let mut v = values.to_vec();
    v.sort();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2
    } else {
        v[mid]
    };
    (median, *v.last().unwrap())
}

// ---- workflow shapes ---------------------------------------------------------------------------

/// An `http` node calling the counter, answered after `ms` × `pace` %.
fn call(c: &Counter, id: &str, ms: u64, pace: u64, after: &[&str]) -> Value {
    json!({"id": id, "executor": "http", "config": {"url": c.url(ms * pace / 100)},
           "depends_on": after})
}

/// A `sleep` node of `ms` × `pace` % (1 ms at least).
fn nap(id: &str, ms: u64, pace: u64, after: &[&str]) -> Value {
    json!({"id": id, "executor": "sleep", "config": {"duration_ms": (ms * pace / 100).max(1)},
           "depends_on": after})
}

/// Fan-out and fan-in: a head call, four branches (three calls of different lengths and a
/// sleep), a join call, a sleep and a last call; about 1.5 s at `pace` 100.
pub(super) fn fan(id: &str, c: &Counter, pace: u64) -> Value {
    json!({"id": id, "max_concurrency": 8, "nodes": [
        call(c, "head", 50, pace, &[]),
        call(c, "short", 150, pace, &["head"]),
        call(c, "long", 600, pace, &["head"]),
        call(c, "quick", 0, pace, &["head"]),
        nap("wait", 500, pace, &["head"]),
        call(c, "join", 100, pace, &["short", "long", "quick", "wait"]),
        nap("rest", 300, pace, &["join"]),
        call(c, "last", 0, pace, &["rest"]),
    ]})
}

/// A chain alternating calls and sleeps; about 1 s at `pace` 100.
pub(super) fn chain(id: &str, c: &Counter, pace: u64) -> Value {
    json!({"id": id, "nodes": [
        call(c, "s1", 100, pace, &[]),
        nap("s2", 300, pace, &["s1"]),
        call(c, "s3", 300, pace, &["s2"]),
        call(c, "s4", 0, pace, &["s3"]),
        nap("s5", 200, pace, &["s4"]),
        call(c, "s6", 100, pace, &["s5"]),
    ]})
}

/// A diamond with a `noop` on one side; about 0.5 s at `pace` 100.
pub(super) fn diamond(id: &str, c: &Counter, pace: u64) -> Value {
    json!({"id": id, "nodes": [
        call(c, "top", 100, pace, &[]),
        {"id": "left", "executor": "noop", "depends_on": ["top"]},
        call(c, "right", 200, pace, &["top"]),
        nap("bottom", 200, pace, &["left", "right"]),
    ]})
}
