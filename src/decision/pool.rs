//! Warm regorus engines kept for reuse instead of cloned per evaluation.
//! `Engine::eval_rule` resets every piece of evaluation state first (data,
//! rule values, scopes, builtin cache, timer), so an engine that finished an
//! evaluation is as good as a fresh clone of the template — without paying
//! for the clone's allocations on every decision. An engine whose evaluation
//! failed, or was abandoned at its deadline, is dropped rather than reused. Checked by
//! `memoized_decisions_equal_full_evaluation`, which reuses pooled engines
//! across thousands of different inputs.

use std::sync::Mutex;

use crate::sync::Recover;

/// Engines kept per pool: enough for the threads that decide at once.
const KEEP: usize = 16;

pub(super) struct Pool {
    template: regorus::Engine,
    free: Mutex<Vec<regorus::Engine>>,
}

impl Pool {
    pub fn new(template: regorus::Engine) -> Self {
        Self {
            template,
            free: Mutex::new(Vec::new()),
        }
    }

    /// A pooled engine, or a clone of the template. The evaluation takes it
    /// to its thread (`engine::run`); it comes back through [`Pool::give`]
    /// only if the evaluation succeeded.
    pub fn take(&self) -> regorus::Engine {
        let taken = self.free.lock().recover().pop();
        taken.unwrap_or_else(|| self.template.clone())
    }

    /// Keeps an engine whose evaluation succeeded, for the next one.
    pub fn give(&self, engine: regorus::Engine) {
        let mut free = self.free.lock().recover();
        if free.len() < KEEP {
            free.push(engine);
        }
    }
}

#[cfg(test)]
impl Pool {
    /// Drops every pooled engine: the next evaluation uses a fresh clone.
    pub fn clear(&self) {
        self.free.lock().recover().clear();
    }
}
