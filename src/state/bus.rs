//! Messages between gavel instances that share Redis (`[state] backend =
//! "redis"`): each instance listens on a channel of its own
//! (`gavel:bus:<instance id>`, Redis pub/sub) and publishes to another's.
//!
//! Why: behind a round robin, a request can land on an instance that does
//! not hold what it refers to — the retry of an input round whose call is
//! parked in another instance's upstream connection
//! (`front/session/handoff.rs`). The instance that got it hands the answer
//! to the one that holds the call and waits for the outcome; no session
//! affinity is needed.
//!
//! Transport only: bytes in, bytes out. What travels is signed by the
//! sender and checked by the receiver (the layer above); this layer bounds
//! what it passes on ([`MAX_MESSAGE_BYTES`]) and never blocks the event
//! loop — the subscriber is a thread of its own, a publish is a blocking
//! round trip the caller runs on the blocking pool. Pub/sub delivers at
//! most once: a message to an instance that is not (or no longer)
//! subscribed is lost, which `publish` reports as "nobody got it", so the
//! caller answers at once instead of waiting for an outcome that cannot
//! come. The subscriber reconnects with a backoff when Redis goes away,
//! and says so in the log once per outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StateError;
use super::redis::RedisStore;

/// The largest message passed on: an input round's answers (1 MiB,
/// `front::session::relay::RESPONSES`) or a call's result, with room.
/// Larger ones are dropped with a warning (the sender times out).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// How often the subscriber looks up from a quiet channel (to stop).
const POLL: Duration = Duration::from_secs(1);
/// Longest wait between reconnects while Redis is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the layer above does with a message (called on the subscriber's
/// thread: it must hand the work off, not do it there).
pub type Inbox = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// This instance's end of the bus.
pub struct Bus {
    me: String,
    store: Arc<RedisStore>,
    inbox: OnceLock<Inbox>,
    /// Whether the subscriber is subscribed now: an outcome sent to this
    /// instance while it is not would be lost.
    listening: AtomicBool,
}

/// The channel instance `id` listens on.
pub fn channel(id: &str) -> String {
    format!("gavel:bus:{id}")
}

impl Bus {
    /// Starts listening as instance `me` on `store`'s server, until
    /// `shutdown`. Messages wait (dropped) until [`Bus::set_inbox`].
    pub fn start(store: Arc<RedisStore>, me: &str, shutdown: CancellationToken) -> Arc<Self> {
        let bus = Arc::new(Self {
            me: me.to_string(),
            store,
            inbox: OnceLock::new(),
            listening: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&bus);
        let client = bus.store.client();
        let url = bus.store.url_masked().to_string();
        let name = channel(me);
        let spawned = std::thread::Builder::new()
            .name("gavel-bus".into())
            .spawn(move || subscribe_loop(&client, &url, &name, &weak, &shutdown));
        if let Err(e) = spawned {
            tracing::error!(
                "cannot start the thread that takes messages from other gavel instances ({e}): a round parked here cannot be answered through another instance"
            );
        }
        bus
    }

    /// Where messages go from now on (once; a second call is ignored).
    pub fn set_inbox(&self, inbox: Inbox) {
        let _ = self.inbox.set(inbox);
    }

    /// This instance's id (what others publish to).
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether an answer sent to this instance now would be received.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Sends `payload` to instance `to`: whether anyone received it.
    /// Blocking (a Redis round trip): run it off the event loop.
    pub fn publish(&self, to: &str, payload: &[u8]) -> Result<bool, StateError> {
        Ok(self.store.publish(&channel(to), payload)? > 0)
    }
}

/// The subscriber: connects, subscribes, passes messages on, and
/// reconnects with a doubling backoff until `shutdown`.
fn subscribe_loop(
    client: &redis::Client,
    url: &str,
    name: &str,
    bus: &std::sync::Weak<Bus>,
    shutdown: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    let mut down_said = false;
    while !shutdown.is_cancelled() {
        let r = listen_once(client, name, bus, shutdown);
        if let Some(b) = bus.upgrade() {
            b.listening.store(false, Ordering::SeqCst);
        } else {
            return;
        }
        match r {
            Ok(()) => return,
            Err(e) => {
                if !down_said {
                    tracing::warn!(redis = %url, "messages from other gavel instances cannot be taken ({e}); retrying with a backoff — until then a round parked here cannot be answered through another instance");
                    down_said = true;
                }
            }
        }
        let step = POLL.min(backoff);
        let mut slept = Duration::ZERO;
        while slept < backoff && !shutdown.is_cancelled() {
            std::thread::sleep(step);
            slept += step;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: `Ok` when gavel stops, `Err` when the connection
/// is lost.
fn listen_once(
    client: &redis::Client,
    name: &str,
    bus: &std::sync::Weak<Bus>,
    shutdown: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(name)?;
    sub.set_read_timeout(Some(POLL))?;
    match bus.upgrade() {
        Some(b) => b.listening.store(true, Ordering::SeqCst),
        None => return Ok(()),
    }
    tracing::debug!(channel = name, "taking messages from other gavel instances");
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let msg = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload = msg.get_payload_bytes();
        if payload.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(
                bytes = payload.len(),
                "dropped a message from another gavel instance: larger than {MAX_MESSAGE_BYTES} bytes"
            );
            continue;
        }
        let Some(b) = bus.upgrade() else {
            return Ok(());
        };
        match b.inbox.get() {
            Some(inbox) => inbox(payload.to_vec()),
            None => tracing::debug!(
                "a message from another gavel instance came before anything here takes them: dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two buses on one Redis: a message published to one arrives there,
    /// once; a message to an instance nobody listens as reports nobody.
    #[test]
    #[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
    fn redis_bus_delivers_to_the_named_instance_only() {
        let server = crate::state::tests::RedisServer::start();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let stop = CancellationToken::new();
        let store = |_: ()| Arc::new(RedisStore::open(&server.url(), true).unwrap());
        let a = Bus::start(store(()), "a", stop.clone());
        let b = Bus::start(store(()), "b", stop.clone());
        let (tx, rx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
        for (bus, name) in [(&a, "a"), (&b, "b")] {
            let tx = tx.clone();
            bus.set_inbox(Arc::new(move |m| {
                let _ = tx.send((name.to_string(), m));
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(a.listening() && b.listening()) {
            assert!(
                std::time::Instant::now() < deadline,
                "buses never subscribed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(a.publish("b", b"hello").unwrap());
        let (to, m) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((to.as_str(), m.as_slice()), ("b", b"hello".as_slice()));
        assert!(!a.publish("nobody", b"lost").unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        stop.cancel();
    }

    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Redis goes away and comes back on the same port: the subscriber
    /// says it is not listening meanwhile, then listens again by itself.
    #[test]
    #[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
    fn redis_bus_listens_again_after_redis_returns() {
        let mut server = crate::state::tests::RedisServer::start();
        let port = server.port;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let stop = CancellationToken::new();
        let store = Arc::new(RedisStore::open(&server.url(), true).unwrap());
        let b = Bus::start(store.clone(), "b", stop.clone());
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        b.set_inbox(Arc::new(move |m| {
            let _ = tx.send(m);
        }));
        until("subscribed", || b.listening());
        server.stop();
        until("the outage seen", || !b.listening());
        let _server = crate::state::tests::RedisServer::start_on(port);
        until("subscribed again", || b.listening());
        // The publishing side's pool recovers after its own backoff.
        until("delivered", || {
            store.publish(&channel("b"), b"back").is_ok_and(|n| n > 0)
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"back");
        stop.cancel();
    }
}
