//! Where policy evaluations run, so that none can take the process down or
//! hold its caller past the limit.
//!
//! - **Stack.** regorus's interpreter recurses on the policy's structure and
//!   on the values it walks (`walk()`, JSON conversion, comparisons of deep
//!   values); a stack overflow aborts the whole process — no unwinding.
//!   Recursive rules are refused at load (`bundle::recursion`); what is left
//!   is bounded by the policy text and the depth of input and data. Each
//!   evaluation runs on a thread of this pool with a [`STACK_BYTES`] stack
//!   (reserved, touched only as deep as it goes), far beyond what any of
//!   those reach — the caller's own (a tokio worker's 2 MiB) never is.
//! - **Time.** regorus's timer is cooperative: checked between interpreter
//!   steps, so one slow builtin call (a regex or glob over a large argument)
//!   runs to its end. The caller waits at most until its deadline and then
//!   fails closed (`policy_timeout`); an evaluation that ends past its
//!   deadline is a timeout too, whatever it answered. An abandoned evaluation
//!   keeps its thread only until its current builtin call returns: its own
//!   regorus timer (same limit) has expired by then and stops it at the next
//!   step, and its result is dropped. The pool is bounded ([`MAX_WORKERS`]):
//!   when every thread is busy, work waits in the queue — within its
//!   deadline, else it is dropped unstarted.
//! - **Memory.** Every evaluation runs inside [`super::memory::scope`].
//! - **Threads that need no hand-off.** A thread that is itself an
//!   evaluation thread — one of this pool's, or a dedicated background
//!   evaluator started with [`spawn_evaluator`] (the shadow queue's) — runs
//!   nested work inline: it already has the stack, nobody waits on it but
//!   its own queue, and a hand-off would cost two cross-thread wake-ups
//!   (tens of µs on this kind of VM) for nothing. Its work is still bounded
//!   in memory (the scope) and in time by regorus's timer; an evaluation
//!   that ends past its deadline is still a timeout for its caller.
//!   A *host* thread ([`mark_host`]: gavel's event loop and blocking pool,
//!   started with the same stack) runs an evaluation itself only when its
//!   input is small ([`run_sized`], [`INLINE_INPUT_BYTES`]); a large one —
//!   where a single builtin call could outlast the limit — still goes to
//!   the pool, so its caller stops waiting at the deadline.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock, mpsc};
use std::time::Instant;

use crate::sync::Recover;

/// Stack of an evaluation thread.
pub const STACK_BYTES: usize = 256 << 20;
/// Evaluation threads at most (idle ones wait for work; none exit).
pub const MAX_WORKERS: usize = 32;

type Task = Box<dyn FnOnce() + Send>;

struct Workers {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    tasks: VecDeque<Task>,
    idle: usize,
    threads: usize,
}

fn workers() -> &'static Workers {
    static W: OnceLock<Workers> = OnceLock::new();
    W.get_or_init(|| Workers {
        state: Mutex::new(State {
            tasks: VecDeque::new(),
            idle: 0,
            threads: 0,
        }),
        ready: Condvar::new(),
    })
}

thread_local! {
    /// Whether this thread runs evaluations itself (see the module doc).
    static EVALUATOR: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread has an evaluation thread's stack and may run a
    /// *small* evaluation itself ([`mark_host`]).
    static HOST: Cell<bool> = const { Cell::new(false) };
}

/// An evaluation whose input is at most this large (estimated by
/// [`input_bytes`]) may run on a host thread ([`mark_host`]) instead of
/// being handed to the pool. Every builtin call over such an input is short
/// (they are linear or n·log n in their arguments), so the cooperative
/// timer's granularity is fine-grained enough to hold the caller to the
/// limit; a larger input — an agent's way to make one builtin call slow —
/// always goes to the pool, where the caller stops waiting at the deadline.
pub const INLINE_INPUT_BYTES: usize = 64 << 10;

/// Marks the calling thread as a host: a thread started with
/// [`STACK_BYTES`] of stack (gavel's event loop and its blocking pool),
/// which runs small evaluations itself — a hand-off costs two cross-thread
/// wake-ups, tens of µs on a VM, more than a small evaluation does. Only
/// mark a thread that really has that stack: regorus's recursion is bounded
/// by it.
pub fn mark_host() {
    HOST.with(|h| h.set(true));
}

/// An estimate of `v`'s serialized size, walking at most until it passes
/// `cap` (so it costs O(cap) on a huge value): what decides whether an
/// evaluation may run inline.
pub fn input_bytes(v: &serde_json::Value, cap: usize) -> usize {
    fn walk(v: &serde_json::Value, total: &mut usize, cap: usize) {
        use serde_json::Value::*;
        if *total > cap {
            return;
        }
        match v {
            Null | Bool(_) | Number(_) => *total += 8,
            String(s) => *total += s.len() + 2,
            Array(a) => {
                *total += 2;
                for x in a {
                    walk(x, total, cap);
                }
            }
            Object(o) => {
                *total += 2;
                for (k, x) in o {
                    *total += k.len() + 3;
                    walk(x, total, cap);
                }
            }
        }
    }
    let mut total = 0;
    walk(v, &mut total, cap);
    total
}

/// [`run`] for an evaluation of `input_bytes` of input: inline on a host
/// thread when that is at most [`INLINE_INPUT_BYTES`], else as [`run`].
pub fn run_sized<T: Send + 'static>(
    deadline: Instant,
    input_bytes: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Outcome<T> {
    if input_bytes <= INLINE_INPUT_BYTES && HOST.with(Cell::get) {
        return inline(deadline, f);
    }
    run(deadline, f)
}

/// Starts a dedicated background thread that evaluates policy itself,
/// without handing each evaluation to the pool: it gets an evaluation
/// thread's stack, and [`run`] on it runs inline. For work nobody waits on
/// (the shadow queue), where a hand-off per evaluation would only add
/// wake-ups on the machine the forwarded calls run on.
pub fn spawn_evaluator(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            EVALUATOR.with(|e| e.set(true));
            f()
        })
}

fn work(w: &'static Workers) {
    EVALUATOR.with(|e| e.set(true));
    loop {
        let task = {
            let mut s = w.state.lock().recover();
            loop {
                if let Some(t) = s.tasks.pop_front() {
                    break t;
                }
                s.idle += 1;
                s = w.ready.wait(s).recover();
                s.idle -= 1;
            }
        };
        // A panic inside an evaluation drops its reply: the caller sees the
        // evaluation failed; the thread goes on serving.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
    }
}

/// How a run ended for its caller.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The deadline passed first; the work was abandoned.
    TimedOut,
    /// The work panicked or no thread could be started for it.
    Failed,
}

/// Runs `f` on an evaluation thread, inside a memory scope, and waits for it
/// until `deadline`. Work that has not started by its deadline never starts.
pub fn run<T: Send + 'static>(
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Outcome<T> {
    if EVALUATOR.with(Cell::get) {
        return inline(deadline, f);
    }
    let w = workers();
    let (tx, rx) = mpsc::sync_channel(1);
    let task: Task = Box::new(move || {
        if Instant::now() >= deadline {
            return;
        }
        let _ = tx.send(super::memory::scope(f));
    });
    {
        let mut s = w.state.lock().recover();
        s.tasks.push_back(task);
        if s.tasks.len() > s.idle && s.threads < MAX_WORKERS {
            let spawned = std::thread::Builder::new()
                .name("gavel-eval".into())
                .stack_size(STACK_BYTES)
                .spawn(move || work(w));
            if spawned.is_ok() {
                s.threads += 1;
            } else if s.threads == 0 {
                s.tasks.clear();
                return Outcome::Failed;
            }
        }
        w.ready.notify_one();
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(v) => Outcome::Done(v),
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::TimedOut,
        // Dropped unsent: not started by its deadline, or it panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) if Instant::now() >= deadline => {
            Outcome::TimedOut
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Outcome::Failed,
    }
}

/// [`run`] on a thread that evaluates itself: the work runs here, in its
/// memory scope; a panic is a failed run, as on the pool.
fn inline<T>(deadline: Instant, f: impl FnOnce() -> T) -> Outcome<T> {
    if Instant::now() >= deadline {
        return Outcome::TimedOut;
    }
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| super::memory::scope(f)));
    match done {
        Ok(v) => Outcome::Done(v),
        Err(_) => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn here() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[test]
    fn a_caller_thread_hands_off_and_an_evaluator_runs_inline() {
        let caller = here();
        let Outcome::Done(on) = run(soon(), here) else {
            panic!("ran")
        };
        assert_ne!(on, caller, "an ordinary thread hands the work to the pool");
        // Work on a pool thread that runs more work: the nested run stays on
        // the same thread.
        let Outcome::Done((outer, inner)) = run(soon(), || {
            let Outcome::Done(inner) = run(soon(), here) else {
                panic!("nested ran")
            };
            (here(), inner)
        }) else {
            panic!("ran")
        };
        assert_eq!(outer, inner, "nested work runs inline");
        let (tx, rx) = mpsc::channel();
        spawn_evaluator("test-evaluator", move || {
            let me = here();
            let Outcome::Done(on) = run(soon(), here) else {
                panic!("ran")
            };
            tx.send((me, on)).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
        let (me, on) = rx.recv().unwrap();
        assert_eq!(me, on, "a dedicated evaluator runs its work itself");
    }

    #[test]
    fn a_host_runs_small_evaluations_itself_and_hands_off_large_ones() {
        let small = serde_json::json!({"action": {"tool": "echo", "args": {"text": "hi"}}});
        let large = serde_json::json!({"text": "x".repeat(INLINE_INPUT_BYTES + 1)});
        let big = INLINE_INPUT_BYTES;
        assert!(input_bytes(&small, big) < 200);
        assert!(input_bytes(&large, big) > big);
        // The estimate stops walking past the cap: a huge array costs O(cap).
        let huge = serde_json::Value::Array(vec![serde_json::json!(1); 10 * big]);
        assert!(input_bytes(&huge, big) <= big + 16);
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let me = here();
                let on = |n: usize| match run_sized(soon(), n, here) {
                    Outcome::Done(t) => t,
                    other => panic!("ran: {other:?}"),
                };
                assert_ne!(on(10), me, "an unmarked thread hands off");
                mark_host();
                assert_eq!(on(input_bytes(&small, big)), me, "small: inline");
                assert_ne!(on(input_bytes(&large, big)), me, "large: the pool");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn inline_work_is_bounded_like_pooled_work() {
        spawn_evaluator("test-evaluator", || {
            let late = run(Instant::now() - Duration::from_millis(1), || 1);
            assert!(matches!(late, Outcome::TimedOut), "{late:?}");
            let panicked = run(soon(), || -> u8 { panic!("inside an evaluation") });
            assert!(matches!(panicked, Outcome::Failed), "{panicked:?}");
            // The thread goes on evaluating after a panic.
            assert!(matches!(run(soon(), || 2), Outcome::Done(2)));
        })
        .unwrap()
        .join()
        .unwrap();
    }
}
