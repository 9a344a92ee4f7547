//! [`Gate`]: at most so many reads of one environment's listing at once, so that one
//! tenant paging through a large environment with many clients cannot take every
//! connection and every core from the others. Runtime-free: a waiter is a waker.

use crate::model::EnvironmentId;
use core::future::poll_fn;
use core::num::NonZeroU32;
use core::task::{Poll, Waker};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Per environment, how many holders there are, and who waits.
#[derive(Default)]
struct Turns {
    holders: u32,
    waiting: Vec<Waker>,
}

pub(super) struct Gate {
    /// `None`: no bound.
    per_environment: Option<NonZeroU32>,
    environments: Mutex<HashMap<EnvironmentId, Turns>>,
}

impl core::fmt::Debug for Gate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gate")
            .field("per_environment", &self.per_environment)
            .finish_non_exhaustive()
    }
}

/// A turn; dropping it (also when the read is cancelled) lets the next one in.
pub(super) struct Turn<'a> {
    gate: &'a Gate,
    environment: Option<EnvironmentId>,
}

impl Gate {
    pub(super) fn new(per_environment: Option<NonZeroU32>) -> Gate {
        Gate {
            per_environment,
            environments: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn per_environment(&self) -> Option<NonZeroU32> {
        self.per_environment
    }

    // Every update leaves the map consistent, so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<EnvironmentId, Turns>> {
        self.environments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a turn in `environment`.
    pub(super) async fn enter(&self, environment: EnvironmentId) -> Turn<'_> {
        let Some(limit) = self.per_environment else {
            return Turn {
                gate: self,
                environment: None,
            };
        };
        poll_fn(|cx| {
            let mut environments = self.lock();
            let turns = environments.entry(environment).or_default();
            if turns.holders < limit.get() {
                turns.holders += 1;
                Poll::Ready(())
            } else {
                if !turns.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    turns.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await;
        Turn {
            gate: self,
            environment: Some(environment),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(environment) = self.environment else {
            return;
        };
        let mut environments = self.gate.lock();
        let Some(turns) = environments.get_mut(&environment) else {
            return;
        };
        turns.holders = turns.holders.saturating_sub(1);
        // Every waiter tries again (one that was cancelled meanwhile wakes to nothing);
        // an environment nobody holds or waits for is forgotten, so the map stays as
        // small as the number of environments being listed.
        let waiting = core::mem::take(&mut turns.waiting);
        if turns.holders == 0 && waiting.is_empty() {
            environments.remove(&environment);
        }
        drop(environments);
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::future::Future;
    use core::pin::Pin;
    use core::task::Context;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn env(n: u128) -> EnvironmentId {
        EnvironmentId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// The turn, if `entering` has one now.
    fn poll<'a>(
        entering: &mut Pin<Box<dyn Future<Output = Turn<'a>> + 'a>>,
        cx: &mut Context<'_>,
    ) -> Option<Turn<'a>> {
        match entering.as_mut().poll(cx) {
            Poll::Ready(turn) => Some(turn),
            Poll::Pending => None,
        }
    }

    /// Two turns per environment: the third waits until one ends, another environment
    /// never waits, a cancelled waiter leaves nothing behind, and nothing is kept once
    /// every turn has ended.
    #[test]
    fn an_environment_gets_its_turns_and_no_more() {
        let gate = Gate::new(NonZeroU32::new(2));
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let enter =
            |n| -> Pin<Box<dyn Future<Output = Turn<'_>> + '_>> { Box::pin(gate.enter(env(n))) };

        let first = poll(&mut enter(1), &mut cx).expect("a first turn");
        let second = poll(&mut enter(1), &mut cx).expect("a second turn");
        let mut third = enter(1);
        assert!(poll(&mut third, &mut cx).is_none(), "a third turn waits");
        let elsewhere = poll(&mut enter(2), &mut cx);
        assert!(elsewhere.is_some(), "another environment never waits");
        drop(elsewhere);
        let mut cancelled = enter(1);
        assert!(poll(&mut cancelled, &mut cx).is_none());
        drop(cancelled);

        drop(first);
        assert!(
            woken.0.load(Ordering::SeqCst) >= 1,
            "ending a turn wakes the waiters"
        );
        let third = poll(&mut third, &mut cx).expect("the freed turn");
        assert!(poll(&mut enter(1), &mut cx).is_none(), "still two at most");
        drop(third);
        drop(second);
        assert!(
            gate.lock().is_empty(),
            "nothing is kept once every turn ended"
        );
    }

    #[test]
    fn no_bound_never_waits() {
        let gate = Gate::new(None);
        let mut cx = Context::from_waker(Waker::noop());
        let turns: Vec<Turn<'_>> = (0..100)
            .map(|_| {
                let mut entering: Pin<Box<dyn Future<Output = Turn<'_>>>> =
                    Box::pin(gate.enter(env(1)));
                poll(&mut entering, &mut cx).expect("never waits")
            })
            .collect();
        assert_eq!(turns.len(), 100);
        assert!(gate.lock().is_empty());
    }
}
