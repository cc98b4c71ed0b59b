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

fn work(w: &'static Workers) {
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
