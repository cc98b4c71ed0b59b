//! `gavel report`: aggregates over a decision log, built in one streaming
//! pass in bounded memory whatever the log's size — a fixed-size latency
//! histogram, a timeline that coarsens its buckets instead of growing, and
//! capped tables whose overflow is counted under `(other)`. Rendering is in
//! `report_html`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use super::GovernanceError;

/// Timeline buckets kept at most; past that the bucket width doubles.
pub const MAX_BUCKETS: usize = 120;
/// Distinct keys kept per table (reasons, tools, revisions, servers).
pub const MAX_KEYS: usize = 1000;
/// The key that absorbs a table's overflow.
pub const OTHER: &str = "(other)";

/// Log-linear histogram of nanosecond values: exact below 16, then 16
/// sub-buckets per power of two (at most 6.25 % relative error), 1024 slots.
#[derive(Debug, Clone)]
pub struct Histogram {
    slots: Vec<u64>,
    pub count: u64,
    pub min: u64,
    pub max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            slots: vec![0; 1024],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn slot(v: u64) -> usize {
    if v < 16 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize; // >= 4
    let sub = ((v >> (e - 4)) - 16) as usize;
    16 + (e - 4) * 16 + sub
}

/// The middle of a slot's range (its value for percentiles).
fn slot_value(i: usize) -> u64 {
    if i < 16 {
        return i as u64;
    }
    let e = (i - 16) / 16 + 4;
    let sub = ((i - 16) % 16) as u64;
    let low = (16 + sub) << (e - 4);
    let width = 1u64 << (e - 4);
    low + (width - 1) / 2
}

impl Histogram {
    pub fn add(&mut self, v: u64) {
        self.slots[slot(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The `q` quantile (0 < q <= 1), within the slot's resolution and
    /// clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.slots.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(slot_value(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// Allowed and denied counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    pub allowed: u64,
    pub denied: u64,
}

impl Split {
    pub(crate) fn add(&mut self, allow: bool) {
        if allow {
            self.allowed += 1
        } else {
            self.denied += 1
        }
    }

    pub fn total(&self) -> u64 {
        self.allowed + self.denied
    }
}

/// A map that keeps at most [`MAX_KEYS`] keys; the rest add to `(other)`.
#[derive(Debug, Clone)]
pub struct Capped<K: Ord, V> {
    pub map: BTreeMap<K, V>,
    cap: usize,
}

impl<K: Ord, V: Default> Capped<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Capped {
            map: BTreeMap::new(),
            cap,
        }
    }

    pub(crate) fn entry(&mut self, k: K, other: K) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            return self.map.entry(other).or_default();
        }
        self.map.entry(k).or_default()
    }
}

/// One bundle revision as seen in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub first: String,
    pub last: String,
    first_t: Option<SystemTime>,
    last_t: Option<SystemTime>,
}

/// Keeps `(time, text)` as the earliest / latest seen; timestamps compare as
/// times, not strings (`…03Z` is before `…03.9Z`).
fn widen(
    first: &mut (Option<SystemTime>, String),
    last: &mut (Option<SystemTime>, String),
    t: SystemTime,
    ts: &str,
) {
    if first.0.is_none_or(|f| t < f) {
        *first = (Some(t), ts.to_string());
    }
    if last.0.is_none_or(|l| t > l) {
        *last = (Some(t), ts.to_string());
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub source: String,
    pub split: Split,
    pub first: Option<String>,
    pub last: Option<String>,
    span: ((Option<SystemTime>, String), (Option<SystemTime>, String)),
    /// Bucket width in seconds, and bucket start (Unix seconds) → counts.
    pub bucket_s: u64,
    pub timeline: BTreeMap<u64, Split>,
    /// Records without a readable timestamp (not on the timeline).
    pub untimed: u64,
    pub reasons: Capped<String, u64>,
    /// (server, action type, tool) → outcome counts.
    pub tools: Capped<(String, String, String), Split>,
    pub servers: Capped<String, Split>,
    /// Persona (`labels.persona`; `(none)` without one) → outcome counts.
    pub personas: Capped<String, Split>,
    /// (bundle, revision, digest) → when seen.
    pub revisions: Capped<(String, String, String), Seen>,
    pub decision_ns: Histogram,
    pub eval_ns: Histogram,
    /// Approval-step records (`approval`): the steps of a human approval.
    /// The final one (`approval.final`, with `result`) carries the outcome
    /// of the decision that waited for it.
    pub approval_steps: u64,
    /// Decisions that waited for a human and whose final approval record is
    /// not in the log (gavel stopped while the user was being asked).
    pub approval_unsettled: u64,
    /// Approval steps by step (requested, approved, declined, …).
    pub approval_by_step: Capped<String, u64>,
    /// The line of a torn last record that was skipped (a crash mid-write).
    pub torn_tail: Option<usize>,
    /// Users, agents, audit and fail-open counts, and the decisions behind
    /// each denial figure.
    pub trail: super::report_trail::Trail,
    /// Shadow records: what the shadow bundles would have decided.
    pub shadow: super::report_shadow::ShadowReport,
    /// Result records (`result_of`): counted apart from decisions.
    pub results: super::report_results::ResultStats,
}

fn parse_ts(ts: &str) -> Option<(SystemTime, u64)> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    let s = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some((t, s))
}

impl Report {
    pub fn new(source: impl Into<String>) -> Self {
        Report {
            source: source.into(),
            split: Split::default(),
            first: None,
            last: None,
            span: Default::default(),
            bucket_s: 1,
            timeline: BTreeMap::new(),
            untimed: 0,
            reasons: Capped::new(MAX_KEYS),
            tools: Capped::new(MAX_KEYS),
            servers: Capped::new(MAX_KEYS),
            personas: Capped::new(MAX_KEYS),
            revisions: Capped::new(MAX_KEYS),
            decision_ns: Histogram::default(),
            eval_ns: Histogram::default(),
            approval_steps: 0,
            approval_unsettled: 0,
            approval_by_step: Capped::new(MAX_KEYS),
            torn_tail: None,
            trail: Default::default(),
            shadow: Default::default(),
            results: Default::default(),
        }
    }

    /// Adds one record: a decision, or an approval step (counted apart).
    ///
    /// A decision that allowed only with a human's approval gets its
    /// outcome from the final approval record (same decision id): counted
    /// there, once, as allowed or denied — not when it was asked.
    pub fn add(&mut self, r: &Value) {
        // A policy query (`gavel__check`) decided nothing.
        if r.get("query").is_some() {
            return;
        }
        if let Some(s) = r.get("shadow") {
            self.shadow.add(r, s);
            return;
        }
        if r.get("result_of").is_some() {
            self.results.add(r);
            return;
        }
        if let Some(a) = r.get("approval") {
            self.approval_steps += 1;
            let name = a["step"].as_str().unwrap_or("?").to_string();
            *self.approval_by_step.entry(name, OTHER.into()) += 1;
            if let Some(result) = r.get("result").filter(|_| a["final"] == true) {
                self.approval_unsettled = self.approval_unsettled.saturating_sub(1);
                self.outcome(r, result, a);
            }
            return;
        }
        let result = &r["result"];
        if result["allow"] == true && result["require_approval"].is_object() {
            self.approval_unsettled += 1;
        } else {
            self.outcome(r, result, &r["input"]["action"]);
        }
        self.decision_record(r);
    }

    /// One decision's outcome: `action` names what was decided (`server`,
    /// `type`, `tool`).
    fn outcome(&mut self, r: &Value, result: &Value, action: &Value) {
        let allow = result["allow"].as_bool().unwrap_or(false);
        self.split.add(allow);
        let ts = r["timestamp"].as_str().unwrap_or("");
        match parse_ts(ts) {
            Some((t, s)) => {
                let (first, last) = &mut self.span;
                widen(first, last, t, ts);
                self.first = Some(first.1.clone());
                self.last = Some(last.1.clone());
                self.timeline
                    .entry(s - s % self.bucket_s)
                    .or_default()
                    .add(allow);
                // Bounded by span, not just by buckets in use, so the chart
                // has at most MAX_BUCKETS slots (and memory follows).
                while self.span_slots() > MAX_BUCKETS as u64 {
                    self.coarsen();
                }
            }
            None => self.untimed += 1,
        }
        if !allow {
            for reason in result["reasons"].as_array().into_iter().flatten() {
                let code = reason.as_str().unwrap_or("?").to_string();
                *self.reasons.entry(code, OTHER.into()) += 1;
            }
        }
        let server = action["server"]
            .as_str()
            .or(r["path"].as_str())
            .unwrap_or("?")
            .to_string();
        let key = (
            server.clone(),
            action["type"].as_str().unwrap_or("?").to_string(),
            action["tool"].as_str().unwrap_or("?").to_string(),
        );
        self.trail.add(r, result, &key);
        let other = (OTHER.to_string(), String::new(), String::new());
        self.tools.entry(key, other).add(allow);
        self.servers.entry(server, OTHER.into()).add(allow);
        let persona = super::persona::of_record(r).unwrap_or(super::persona::NONE);
        self.personas
            .entry(persona.to_string(), OTHER.into())
            .add(allow);
    }

    /// What a decision record says besides its outcome: the bundle
    /// revisions it was made with and its latency.
    fn decision_record(&mut self, r: &Value) {
        let ts = r["timestamp"].as_str().unwrap_or("");
        let parsed = parse_ts(ts);
        for (name, b) in r["bundles"].as_object().into_iter().flatten() {
            let key = (
                name.clone(),
                b["revision"].as_str().unwrap_or("").to_string(),
                b["digest"].as_str().unwrap_or("").to_string(),
            );
            let other = (OTHER.to_string(), String::new(), String::new());
            let seen = self.revisions.entry(key, other);
            seen.count += 1;
            if let Some((t, _)) = parsed {
                let mut first = (seen.first_t, std::mem::take(&mut seen.first));
                let mut last = (seen.last_t, std::mem::take(&mut seen.last));
                widen(&mut first, &mut last, t, ts);
                (seen.first_t, seen.first) = first;
                (seen.last_t, seen.last) = last;
            }
        }
        let m = &r["metrics"];
        if let Some(v) = m["timer_gavel_decision_ns"].as_u64() {
            self.decision_ns.add(v);
        }
        if let Some(v) = m["timer_rego_query_eval_ns"].as_u64() {
            self.eval_ns.add(v);
        }
    }

    fn span_slots(&self) -> u64 {
        match (
            self.timeline.keys().next(),
            self.timeline.keys().next_back(),
        ) {
            (Some(a), Some(b)) => (b - a) / self.bucket_s + 1,
            _ => 0,
        }
    }

    /// Doubles the bucket width, merging neighbours.
    fn coarsen(&mut self) {
        self.bucket_s *= 2;
        let old = std::mem::take(&mut self.timeline);
        for (start, s) in old {
            let e = self
                .timeline
                .entry(start - start % self.bucket_s)
                .or_default();
            e.allowed += s.allowed;
            e.denied += s.denied;
        }
    }

    /// Denied / total (0 for an empty log).
    pub fn denial_rate(&self) -> f64 {
        if self.split.total() == 0 {
            0.0
        } else {
            self.split.denied as f64 / self.split.total() as f64
        }
    }

    /// Reasons by count, most frequent first (ties by code).
    pub fn top_reasons(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .reasons
            .map
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Reads a whole log.
    pub fn from_log(path: &Path) -> Result<Report, GovernanceError> {
        let mut r = Report::new(path.display().to_string());
        r.torn_tail = crate::audit::read::for_each_record::<GovernanceError>(path, |_, v| {
            r.add(&v);
            Ok(true)
        })?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(ts: &str, tool: &str, allow: bool, reasons: &[&str], ns: u64) -> Value {
        json!({"decision_id": "x", "timestamp": ts, "path": "fs",
               "input": {"action": {"type": "tool_call", "server": "fs", "tool": tool}},
               "result": {"allow": allow, "reasons": reasons},
               "bundles": {"filesystem": {"revision": "1.4.7", "digest": "sha256:ab"}},
               "metrics": {"timer_gavel_decision_ns": ns, "timer_rego_query_eval_ns": ns / 2}})
    }

    #[test]
    fn aggregates_a_small_log() {
        let log = vec![
            rec("2026-11-22T12:00:00.5Z", "read_file", true, &[], 1000),
            rec(
                "2026-11-22T12:00:01Z",
                "move_file",
                false,
                &["destructive_operation"],
                2000,
            ),
            rec(
                "2026-11-22T12:00:03Z",
                "write_file",
                false,
                &["write_outside_writable", "path_outside_scope"],
                3000,
            ),
            rec(
                "2026-11-22T12:00:03.9Z",
                "move_file",
                false,
                &["destructive_operation"],
                4000,
            ),
        ];
        let mut r = Report::new("t");
        for l in &log {
            r.add(l);
        }
        assert_eq!(
            r.split,
            Split {
                allowed: 1,
                denied: 3
            }
        );
        assert_eq!(r.denial_rate(), 0.75);
        assert_eq!(
            r.top_reasons(),
            vec![
                ("destructive_operation", 2),
                ("path_outside_scope", 1),
                ("write_outside_writable", 1)
            ]
        );
        let mv = &r.tools.map[&("fs".into(), "tool_call".into(), "move_file".into())];
        assert_eq!(
            *mv,
            Split {
                allowed: 0,
                denied: 2
            }
        );
        assert_eq!(r.timeline.len(), 3, "{:?}", r.timeline);
        assert_eq!(r.first.as_deref(), Some("2026-11-22T12:00:00.5Z"));
        assert_eq!(r.last.as_deref(), Some("2026-11-22T12:00:03.9Z"));
        let seen = &r.revisions.map[&("filesystem".into(), "1.4.7".into(), "sha256:ab".into())];
        assert_eq!(seen.count, 4);
        assert_eq!(r.decision_ns.count, 4);
        assert_eq!(r.decision_ns.max, 4000);
        // p50 of {1000, 2000, 3000, 4000} is 2000 within the 6.25 % resolution.
        let p50 = r.decision_ns.quantile(0.5).unwrap();
        assert!((1875..=2125).contains(&p50), "{p50}");
        assert_eq!(r.eval_ns.quantile(1.0), Some(2000));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut r = Report::new("t");
        for i in 0..5000u64 {
            let ts = humantime::format_rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i * 37),
            )
            .to_string();
            let reason = format!("reason_{i}");
            r.add(&rec(&ts, &format!("tool_{i}"), false, &[&reason], i));
        }
        assert!(r.timeline.len() <= MAX_BUCKETS);
        assert_eq!(r.timeline.values().map(Split::total).sum::<u64>(), 5000);
        assert_eq!(r.reasons.map.len(), MAX_KEYS + 1);
        assert_eq!(r.reasons.map[OTHER], 5000 - MAX_KEYS as u64);
        assert_eq!(r.tools.map.len(), MAX_KEYS + 1);
    }

    #[test]
    fn histogram_slots_round_trip() {
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 123_456, u64::MAX / 3] {
            let mid = slot_value(slot(v));
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.0625, "{v} -> {mid}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn approval_steps_are_counted_apart_from_decisions() {
        let mut r = Report::new("t");
        r.add(&rec("2026-11-22T12:00:00Z", "deploy", true, &[], 1000));
        // A decision that waits for a human: its outcome is the final step's.
        let mut asked = rec("2026-11-22T12:00:01Z", "deploy", true, &[], 1000);
        asked["result"]["require_approval"] = json!({"reason": "r"});
        r.add(&asked);
        assert_eq!(r.split.total(), 1, "not counted while the user is asked");
        assert_eq!(r.approval_unsettled, 1);
        let step = |s: &str, result: Option<Value>| {
            let mut v = json!({"decision_id": "x", "timestamp": "2026-11-22T12:00:02Z",
                      "approval": {"step": s, "final": result.is_some(), "type": "tool_call", "server": "fs", "tool": "deploy"}});
            if let Some(res) = result {
                v["result"] = res;
            }
            v
        };
        r.add(&step("requested", None));
        r.add(&step(
            "declined",
            Some(json!({"allow": false, "reasons": ["approval_declined"]})),
        ));
        assert_eq!(
            r.split,
            Split {
                allowed: 1,
                denied: 1
            }
        );
        assert_eq!(r.approval_steps, 2);
        assert_eq!(r.approval_unsettled, 0);
        assert_eq!(r.approval_by_step.map["declined"], 1);
        assert_eq!(r.top_reasons(), vec![("approval_declined", 1)]);
        assert_eq!(r.tools.map.len(), 1, "{:?}", r.tools.map);
        // Both decision records' latencies count.
        assert_eq!(r.decision_ns.count, 2);
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_noted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        let whole = rec("2026-11-22T12:00:00Z", "read_file", true, &[], 1000).to_string();
        std::fs::write(&p, format!("{whole}\n{}", &whole[..whole.len() / 2])).unwrap();
        let r = Report::from_log(&p).unwrap();
        assert_eq!(r.split.total(), 1);
        assert_eq!(r.torn_tail, Some(2));
    }
}
