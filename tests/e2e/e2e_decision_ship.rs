//! End to end: shipping the decision log with OPA's upload protocol to a
//! real receiver run by the test (tests/clients/log_receiver.py) — every
//! record arrives exactly once across a receiver outage and a gavel
//! `kill -9` during one, and the spool bound behaves as configured.
//!
//! Shipping is at least once (`audit/ship`): a body the receiver took
//! whose position commit a `kill -9` prevented is sent again. So "exactly
//! once" is asserted only where no delivery can be in flight at a kill
//! (the receiver down, or shipping stopped); a kill of a process that may
//! be delivering is checked for what the design promises instead
//! ([`at_least_once_across_a_kill`]).

use crate::common;

use std::collections::BTreeSet;

use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};

/// A config with a decision log shipped to `rx`, one fixture server.
fn config(s: &Setup, rx: &Receiver, extra: &str) -> String {
    format!(
        "{}[log.ship]\nurl = {:?}\nmin_delay = \"20ms\"\nmax_delay = \"200ms\"\n{extra}\n{}",
        s.decision_log_table(),
        rx.url(),
        fixture_server("fx", &[], &s.record("fx"))
    )
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every decision-log id arrived, and none twice.
async fn all_arrive_once(s: &Setup, rx: &Receiver) {
    eventually("every record shipped", || {
        ids(&rx.events()).len() >= s.decisions().len()
    })
    .await;
    let sent = ids(&rx.events());
    let logged = ids(&s.decisions());
    assert_eq!(sent.len(), logged.len(), "exactly once: {sent:?}");
    assert_eq!(
        sent.iter().collect::<BTreeSet<_>>(),
        logged.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(sent, logged, "in log order");
}

/// The ids the receiver accepted, as the bodies they came in (arrival
/// order), once every accepted request is noted (it writes a body's events
/// and then its note, under one lock).
async fn bodies(rx: &Receiver) -> Vec<Vec<String>> {
    let counted = || -> usize {
        rx.requests()
            .iter()
            .filter(|r| r["status"] == 200)
            .map(|r| r["events"].as_u64().unwrap() as usize)
            .sum()
    };
    eventually("every accepted body noted", || {
        counted() == rx.events().len()
    })
    .await;
    let mut ids = ids(&rx.events()).into_iter();
    rx.requests()
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            ids.by_ref()
                .take(r["events"].as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

/// What shipping promises across one `kill -9` of a process that may be
/// delivering: every logged record arrived and nothing else did; a record
/// arrived twice only if it was in flight at the kill — in the one body
/// the receiver took before the kill (`at_kill`: events it had accepted
/// then) whose position commit the kill prevented. Each such record twice,
/// no more, and all of them in that one body.
fn at_least_once_across_a_kill(logged: &[String], bodies: &[Vec<String>], at_kill: usize) {
    let sent: Vec<&String> = bodies.iter().flatten().collect();
    assert_eq!(
        sent.iter().copied().collect::<BTreeSet<_>>(),
        logged.iter().collect::<BTreeSet<_>>(),
        "every record arrived, and only those"
    );
    let mut seen = std::collections::BTreeMap::<&String, usize>::new();
    for id in &sent {
        *seen.entry(id).or_default() += 1;
    }
    let twice: BTreeSet<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        seen.values().all(|n| *n <= 2),
        "a record arrived more than twice: {seen:?}"
    );
    // The body each duplicate first arrived in, and where it started.
    let mut start = 0;
    let mut first_in = BTreeSet::new();
    for (i, body) in bodies.iter().enumerate() {
        if body
            .iter()
            .any(|id| twice.contains(id) && !sent[..start].contains(&id))
        {
            first_in.insert((i, start));
        }
        start += body.len();
    }
    assert!(
        first_in.len() <= 1,
        "duplicates from more than one body: {first_in:?} ({twice:?})"
    );
    if let Some(&(i, start)) = first_in.first() {
        assert!(start < at_kill, "the duplicated body came after the kill");
        assert!(
            twice.iter().all(|id| bodies[i].contains(id)),
            "a duplicate outside the body in flight at the kill: {twice:?} {:?}",
            bodies[i]
        );
    }
}

async fn calls(client: &Client, n: usize, tag: &str) {
    for i in 0..n {
        call(client, "echo", json!({"text": format!("{tag}{i}")}))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_arrive_exactly_once_across_an_outage_and_a_kill_9() {
    let s = Setup::blank();
    let rx = Receiver::start(&s.path("rx"));
    s.write_config(&config(&s, &rx, ""));
    let (client, pid, mut gavel) = s.connect_with_pid(TestHost::new()).await;
    calls(&client, 3, "up").await;
    all_arrive_once(&s, &rx).await;
    // OPA's protocol: POST /logs, gzip, a JSON array.
    assert!(
        rx.requests()
            .iter()
            .all(|r| r["path"] == "/logs" && r["encoding"] == "gzip")
    );
    assert_eq!(rx.events()[0]["labels"]["app"], "gavel");

    // An outage: uploads fail, decisions go on, nothing is lost.
    rx.fail();
    calls(&client, 3, "down").await;
    eventually("uploads refused", || rx.refused() >= 2).await;
    rx.recover();
    all_arrive_once(&s, &rx).await;

    // kill -9 while the receiver is down: the records wait in the log.
    rx.fail();
    calls(&client, 3, "killed").await;
    let refused = rx.refused();
    eventually("uploads refused again", || rx.refused() > refused).await;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = gavel.wait().await;
    drop(client);
    let before = rx.events().len();
    assert!(
        before < s.decisions().len(),
        "the last records were not shipped yet"
    );
    rx.recover();
    let client = s.connect(TestHost::new()).await;
    calls(&client, 1, "after").await;
    all_arrive_once(&s, &rx).await;
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_spool_bound_the_oldest_records_are_dropped_and_counted() {
    let s = Setup::blank();
    let rx = Receiver::start(&s.path("rx"));
    // A backlog over the bound, made while nothing ships (no [log.ship]
    // yet: as a service that was never reachable), so that the shipper
    // meets it whole.
    s.write_config(&format!(
        "{}{}",
        s.decision_log_table(),
        fixture_server("fx", &[], &s.record("fx"))
    ));
    let client = s.connect(TestHost::new()).await;
    calls(&client, 12, "x").await;
    let _ = client.cancel().await;
    let first = s.decisions();
    let log_bytes = std::fs::metadata(s.path("decisions.jsonl")).unwrap().len();
    assert!(
        log_bytes > 2 * 4096,
        "the test needs a backlog over the bound: {log_bytes}"
    );
    s.write_config(&config(&s, &rx, "max_spool_bytes = 4096"));
    let port = free_port();
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let client = connect_cmd(cmd, TestHost::new()).await;
    let last = ids(&first).last().cloned();
    eventually("the newest records shipped", || {
        ids(&rx.events()).contains(last.as_ref().unwrap())
    })
    .await;
    let instance = &first[0]["labels"]["id"];
    let sent: Vec<Value> = rx
        .events()
        .into_iter()
        .filter(|e| &e["labels"]["id"] == instance)
        .collect();
    let (sent, logged) = (ids(&sent), ids(&first));
    assert!(
        !sent.is_empty() && sent.len() < logged.len(),
        "{} of {}",
        sent.len(),
        logged.len()
    );
    assert_eq!(
        sent[..],
        logged[logged.len() - sent.len()..],
        "the newest, in order, once"
    );
    let shipped: u64 = first
        .iter()
        .rev()
        .take(sent.len())
        .map(|r| r.to_string().len() as u64 + 1)
        .sum();
    assert!(shipped <= 4096, "within the bound: {shipped}");
    // Counted: what was dropped (records of the first process not sent),
    // and what was delivered.
    let m = common::metrics::scrape(port).await;
    let dropped = common::metrics::value(&m, "gavel_decision_log_ship_dropped_total");
    assert_eq!(dropped as usize, logged.len() - sent.len(), "{m}");
    assert!(common::metrics::value(&m, "gavel_decision_log_shipped_total") >= sent.len() as f64);
    assert_eq!(
        common::metrics::value(&m, "gavel_decision_log_ship_stopped"),
        0.0
    );
    assert!(
        s.log_text().contains("the oldest records were not shipped"),
        "the drop is logged: {}",
        s.log_text()
    );
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_bound_stop_ships_nothing_and_loses_nothing() {
    let s = Setup::blank();
    let rx = Receiver::start(&s.path("rx"));
    rx.fail();
    s.write_config(&config(
        &s,
        &rx,
        "max_spool_bytes = 4096\nat_bound = \"stop\"",
    ));
    let (client, pid, mut gavel) = s.connect_with_pid(TestHost::new()).await;
    calls(&client, 12, "x").await;
    eventually("shipping stopped, logged", || {
        s.log_text().contains("STOPPED")
    })
    .await;
    let asked = rx.requests().len();
    rx.recover();
    // Stopped: the receiver is back, and a new record does not restart
    // shipping (checked once here; the restart below is the proof that
    // nothing was lost).
    calls(&client, 1, "y").await;
    assert_eq!(rx.events().len(), 0, "nothing shipped while stopped");
    assert!(rx.requests().len() >= asked);
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = gavel.wait().await;
    drop(client);
    // With a bound that fits, every record arrives, exactly once.
    s.write_config(&config(
        &s,
        &rx,
        "max_spool_bytes = \"1MiB\"\nat_bound = \"stop\"",
    ));
    let client = s.connect(TestHost::new()).await;
    all_arrive_once(&s, &rx).await;
    let _ = client.cancel().await;
}

/// Every record of the log and its rotated generations, oldest first.
fn all_generations(s: &Setup, keep: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for n in (1..=keep).rev() {
        out.extend(records(&s.path(&format!("decisions.jsonl.{n}"))));
    }
    out.extend(s.decisions());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_sharing_a_rotating_log_ship_it_whole_across_a_kill() {
    let s = Setup::blank();
    let rx = Receiver::start(&s.path("rx"));
    let log = format!(
        "[log]\ndecisions = {:?}\nrotate_bytes = 4096\nrotate_keep = 20\n",
        s.path("decisions.jsonl").display().to_string()
    );
    s.write_config(&format!(
        "{log}[log.ship]\nurl = {:?}\nmin_delay = \"20ms\"\nmax_delay = \"200ms\"\n{}",
        rx.url(),
        fixture_server("fx", &[], &s.record("fx"))
    ));
    // Two host windows, one log file: one process ships it.
    let (a, pid_a, mut gavel_a) = s.connect_with_pid(TestHost::new()).await;
    let b = s.connect(TestHost::new()).await;
    for i in 0..6 {
        calls(&a, 2, &format!("a{i}-")).await;
        calls(&b, 2, &format!("b{i}-")).await;
    }
    assert!(
        std::fs::metadata(s.path("decisions.jsonl.2")).is_ok(),
        "the log rotated (the test needs it)"
    );
    // The shipper may be either process: kill one, the other goes on. It
    // may be delivering then: at least once (module doc).
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid_a, libc::SIGKILL) };
    let _ = gavel_a.wait().await;
    let at_kill = rx.events().len();
    drop(a);
    calls(&b, 4, "b-after").await;
    let logged = ids(&all_generations(&s, 20));
    eventually("every record shipped", || {
        let sent: BTreeSet<String> = ids(&rx.events()).into_iter().collect();
        logged.iter().all(|id| sent.contains(id))
    })
    .await;
    at_least_once_across_a_kill(&logged, &bodies(&rx).await, at_kill);
    let _ = b.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_process_writes_past_a_rotation_another_made_and_is_shipped() {
    let s = Setup::blank();
    let rx = Receiver::start(&s.path("rx"));
    s.write_config(&format!(
        "[log]\ndecisions = {:?}\nrotate_bytes = 4096\nrotate_keep = 20\n[log.ship]\nurl = {:?}\nmin_delay = \"20ms\"\nmax_delay = \"200ms\"\n{}",
        s.path("decisions.jsonl").display().to_string(),
        rx.url(),
        fixture_server("fx", &[], &s.record("fx"))
    ));
    let a = s.connect(TestHost::new()).await;
    let b = s.connect(TestHost::new()).await;
    // `a` alone rotates the file `b` opened.
    let mut n = 0;
    while std::fs::metadata(s.path("decisions.jsonl.1")).is_err() {
        calls(&a, 1, &format!("a{n}")).await;
        n += 1;
    }
    // Shipping has moved past the rotated file to the live one.
    let live = || {
        use std::os::unix::fs::MetadataExt;
        let pos: Value = serde_json::from_slice(
            &std::fs::read(s.path("decisions.jsonl.ship.json")).unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        let m = std::fs::metadata(s.path("decisions.jsonl")).unwrap();
        pos["ino"] == m.ino()
    };
    eventually("shipping reached the live file", live).await;
    // `b`'s next record lands in the live file, not the rotated one, and
    // is shipped.
    calls(&b, 1, "b-late").await;
    let logged = ids(&all_generations(&s, 20));
    eventually("every record shipped", || rx.events().len() >= logged.len()).await;
    let sent = ids(&rx.events());
    assert_eq!(
        sent.iter().collect::<BTreeSet<_>>(),
        logged.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(sent.len(), logged.len(), "exactly once");
    let _ = (a.cancel().await, b.cancel().await);
}
