//! The listen loop against a real rmcp server (2026-07-28 only) in
//! process: what it asks for, a stream the server ends opened again (and
//! the list re-read), frames turned into announcements, teardown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{
    ProtocolVersion, ServerCapabilities, ServerInfo, ServerNotification, SubscriptionFilter,
    ToolListChangedNotification,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::json;
use std::collections::BTreeSet;
use tokio::sync::{Notify, watch};

use super::*;

/// Ends its first listen at once (a graceful server teardown); keeps the
/// next ones open, sending a tools change whenever `poke` is notified.
#[derive(Clone, Default)]
struct Lister {
    listens: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    poke: Arc<Notify>,
    /// Advertises list changes but answers every listen -32601.
    refuse: bool,
}

impl ServerHandler for Lister {
    fn get_info(&self) -> ServerInfo {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerInfo::new(caps)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
    }

    fn accepted_subscription_filter(&self, r: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        (!self.refuse).then(|| r.clone())
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        if self.listens.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(());
        }
        loop {
            tokio::select! {
                _ = self.poke.notified() => {
                    let n = ServerNotification::ToolListChangedNotification(
                        ToolListChangedNotification::default(),
                    );
                    cx.sink().send(n).await.expect("an accepted notification");
                }
                _ = cx.cancelled() => break,
            }
        }
        self.closed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn the_filter_asks_for_what_the_upstream_advertises() {
    let caps: ServerCapabilities = serde_json::from_value(json!({
        "tools": {"listChanged": true},
        "prompts": {},
        "resources": {"subscribe": true, "listChanged": true},
    }))
    .unwrap();
    let f = filter(&caps).unwrap();
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        json!({"toolsListChanged": true, "resourcesListChanged": true})
    );
    assert_eq!(kinds(&f), vec![ListKind::Tools, ListKind::Resources]);
    let quiet: ServerCapabilities =
        serde_json::from_value(json!({"tools": {}, "logging": {}})).unwrap();
    assert!(filter(&quiet).is_none());
}

/// A connected modern client of `lister`, and the listen over it.
async fn connect(lister: &Lister) -> (rmcp::service::RunningService<rmcp::RoleClient, ()>, Listen) {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let server = lister.clone();
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ()
        .serve_with_lifecycle(
            client_io,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("a modern connection");
    let caps = client.peer().peer_info().unwrap().capabilities.clone();
    let listen = Listen {
        server: "lister".into(),
        peer: client.peer().clone(),
        filter: Some(filter(&caps).expect("it advertises tools listChanged")),
        uris: None,
        changes: Arc::new(ListChanges::default()),
        host: Arc::new(HostLink::default()),
        shared: None,
        ct: CancellationToken::new(),
        ack_timeout: Duration::from_secs(10),
    };
    (client, listen)
}

#[tokio::test]
async fn an_ended_stream_is_opened_again_and_its_frames_announced() {
    let lister = Lister::default();
    let (client, listen) = connect(&lister).await;
    let (changes, ct) = (listen.changes.clone(), listen.ct.clone());
    let (opened, first) = oneshot::channel();
    let task = tokio::spawn(listen.run(opened));
    first.await.unwrap();
    // The server ended the first stream: it is opened again, and the list
    // re-read (a change may have come while it was closed).
    assert_eq!(changes.next().await, vec![ListKind::Tools]);
    assert_eq!(lister.listens.load(Ordering::SeqCst), 2);
    // A frame on the new stream is an announcement.
    lister.poke.notify_one();
    assert_eq!(changes.next().await, vec![ListKind::Tools]);
    // Cancelled: the stream is cancelled upstream and the loop ends.
    ct.cancel();
    task.await.unwrap();
    let closed = async {
        while lister.closed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the server saw its stream cancelled");
    assert_eq!(lister.listens.load(Ordering::SeqCst), 2);
    let _ = client.cancel().await;
}

#[tokio::test]
async fn a_refused_listen_is_not_asked_again() {
    let lister = Lister {
        refuse: true,
        ..Lister::default()
    };
    let (client, listen) = connect(&lister).await;
    let (opened, first) = oneshot::channel();
    // The loop ends by itself (no cancellation), after one attempt.
    tokio::time::timeout(Duration::from_secs(60), listen.run(opened))
        .await
        .expect("the loop gives up on a refusal");
    first.await.unwrap();
    assert_eq!(lister.listens.load(Ordering::SeqCst), 0);
    let _ = client.cancel().await;
}

/// Offers resource subscriptions: records the URIs of every listen it is
/// sent and, when poked, sends an update of each URI its open listen
/// follows.
#[derive(Clone, Default)]
struct Follower {
    asked: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    closed: Arc<AtomicUsize>,
    poke: Arc<Notify>,
}

impl ServerHandler for Follower {
    fn get_info(&self) -> ServerInfo {
        let caps = ServerCapabilities::builder()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        ServerInfo::new(caps)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
    }

    fn accepted_subscription_filter(&self, r: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(r.clone())
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let uris = cx
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        self.asked.lock().unwrap().push(uris.clone());
        loop {
            tokio::select! {
                _ = self.poke.notified() => {
                    for u in &uris {
                        cx.sink().notify_resource_updated(u.clone()).await.expect("an accepted URI");
                    }
                }
                _ = cx.cancelled() => break,
            }
        }
        self.closed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Waits (bounded) until `done` holds.
async fn until_true(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("{what}"));
}

#[tokio::test]
async fn followed_uris_ride_the_listen_which_is_opened_again_when_they_change() {
    let follower = Follower::default();
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let server = follower.clone();
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ()
        .serve_with_lifecycle(
            client_io,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("a modern connection");
    let caps = client.peer().peer_info().unwrap().capabilities.clone();
    assert!(filter(&caps).is_none(), "no list changes advertised");
    let (uris, rx) = watch::channel(BTreeSet::new());
    let host = Arc::new(HostLink::default());
    host.set_modern();
    let mut updates = host.resource_updates();
    let ct = CancellationToken::new();
    let listen = Listen {
        server: "follower".into(),
        peer: client.peer().clone(),
        filter: None,
        uris: Some(rx),
        changes: Arc::new(ListChanges::default()),
        host: host.clone(),
        shared: None,
        ct: ct.clone(),
        ack_timeout: Duration::from_secs(10),
    };
    let (opened, first) = oneshot::channel();
    let task = tokio::spawn(listen.run(opened));
    // Nothing followed yet: nothing is opened, and the supervisor is not
    // kept waiting.
    first.await.unwrap();
    assert!(follower.asked.lock().unwrap().is_empty());

    uris.send_modify(|s| {
        s.insert("r://a".to_string());
    });
    let asked = || follower.asked.lock().unwrap().clone();
    until_true("a listen for r://a", || asked().len() == 1).await;
    assert_eq!(asked()[0], vec!["r://a"]);
    follower.poke.notify_one();
    let u = tokio::time::timeout(Duration::from_secs(60), updates.recv())
        .await
        .expect("an update")
        .unwrap();
    assert_eq!(u.uri, "r://a");

    // A second URI: the stream is opened again with both, the old one
    // cancelled.
    uris.send_modify(|s| {
        s.insert("r://b".to_string());
    });
    until_true("a listen for both", || asked().len() == 2).await;
    assert_eq!(asked()[1], vec!["r://a", "r://b"]);
    until_true("the first stream cancelled", || {
        follower.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    // None followed any more: the stream is cancelled, none opened.
    uris.send_modify(BTreeSet::clear);
    until_true("the second stream cancelled", || {
        follower.closed.load(Ordering::SeqCst) == 2
    })
    .await;
    ct.cancel();
    task.await.unwrap();
    assert_eq!(asked().len(), 2);
    let _ = client.cancel().await;
}
