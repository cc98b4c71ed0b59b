//! The pure parts of shipping: events cut into gzip-compressed JSON arrays
//! no larger than OPA's upload limit (`reporting.upload_size_limit_bytes`,
//! 32 KiB by default, the compressed size of one POST body), and the delay
//! before a retry (exponential backoff with jitter, as OPA's plugin).

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;

/// One POST body: how many of the given events it holds, and the gzip of
/// their JSON array.
#[derive(Debug)]
pub struct Chunk {
    pub events: usize,
    pub body: Vec<u8>,
}

/// gzip of `[e0,e1,…]` (each event already one JSON value).
pub fn gzip_array(events: &[&[u8]]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writes to a Vec cannot fail.
    let _ = gz.write_all(b"[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            let _ = gz.write_all(b",");
        }
        let _ = gz.write_all(e);
    }
    let _ = gz.write_all(b"]");
    gz.finish().unwrap_or_default()
}

/// The first event alone is larger than the upload limit, compressed: OPA
/// drops such an event (and so does the caller, logged and counted).
#[derive(Debug, thiserror::Error)]
#[error("an event is larger than the upload limit, compressed")]
pub struct Oversized;

/// The first chunk of `events`: as many leading events as fit in `limit`
/// compressed bytes (halving until they fit).
pub fn first_chunk(events: &[&[u8]], limit: usize) -> Result<Chunk, Oversized> {
    let mut n = events.len();
    while n > 0 {
        let body = gzip_array(&events[..n]);
        if body.len() <= limit {
            return Ok(Chunk { events: n, body });
        }
        n /= 2;
    }
    Err(Oversized)
}

/// The delay before retry number `attempt` (0-based): `min · 2^attempt`,
/// capped at `max`, then jittered into its upper half (`[d/2, d]`) so that
/// many gavel processes do not retry in step. `unit` in `[0, 1)`.
pub fn backoff(min: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let base = min
        .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// A random number in `[0, 1)` (uuid's v4 source: no extra dependency).
pub fn jitter() -> f64 {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    (a >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> serde_json::Value {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn a_chunk_is_a_gzipped_json_array_within_the_limit() {
        // Incompressible-ish events so the limit bites.
        let events: Vec<Vec<u8>> = (0..200)
            .map(|i| {
                serde_json::to_vec(
                    &serde_json::json!({"decision_id": uuid::Uuid::new_v4().to_string(), "n": i}),
                )
                .unwrap()
            })
            .collect();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let mut at = 0;
        let mut seen = 0;
        while at < refs.len() {
            let c = first_chunk(&refs[at..], 2048).unwrap();
            assert!(c.body.len() <= 2048, "{}", c.body.len());
            let arr = gunzip(&c.body);
            let arr = arr.as_array().unwrap();
            assert_eq!(arr.len(), c.events);
            for (k, e) in arr.iter().enumerate() {
                assert_eq!(e["n"], at + k, "in order, none skipped");
            }
            at += c.events;
            seen += 1;
        }
        assert!(seen > 1, "the limit split the events");
        // Everything fits in one chunk under a large limit.
        assert_eq!(first_chunk(&refs, 1 << 20).unwrap().events, 200);
    }

    #[test]
    fn an_event_larger_than_the_limit_is_refused() {
        let big =
            serde_json::to_vec(&(0..4000).map(|i| i * 7919 % 10007).collect::<Vec<_>>()).unwrap();
        assert!(first_chunk(&[&big], 512).is_err());
        assert!(first_chunk(&[], 512).is_err());
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff(min, max, 0, 1.0), min);
        assert_eq!(backoff(min, max, 0, 0.0), min / 2);
        assert_eq!(backoff(min, max, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(min, max, 10, 1.0), max);
        assert_eq!(backoff(min, max, 99, 0.0), max / 2);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
