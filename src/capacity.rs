//! capacity: the --find-capacity search, without I/O. Steps of one
//! open-loop rate each; the rate doubles until a step fails, then the
//! search bisects between the highest rate that passed and the lowest
//! that failed until they are within the precision. The engine runs
//! the steps and tells the search how each went.

use std::time::Duration;

/// How the search was asked to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityPlan {
    /// The first step's rate (--rate, else `FIRST_RATE`).
    pub first: f64,
    /// --step: each step's length.
    pub step: Duration,
    /// --precision as a fraction (0.05 for 5%).
    pub precision: f64,
}

/// The first step's rate without --rate.
pub const FIRST_RATE: f64 = 10.0;

/// Steps at most (a search that has not converged by then answers with
/// the best rate so far).
pub const MAX_STEPS: u32 = 30;

/// No step goes faster than --rate may.
pub const MAX_RATE: f64 = 1e7;

/// A step also fails when fewer messages than this share of its target
/// were accepted in its measured part: the server (or -s) did not keep
/// up, whatever the thresholds say.
pub const KEEP_UP: f64 = 0.95;

impl CapacityPlan {
    /// The start of each step that is not measured: a fifth of it (the
    /// queue the step before left behind drains, the rate settles).
    pub fn warmup(&self) -> Duration {
        self.step / 5
    }

    /// Longest the search can run.
    pub fn longest(&self) -> Duration {
        self.step * MAX_STEPS
    }
}

/// One step's measured part, as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub target: f64,
    pub achieved: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Connection errors and failed messages.
    pub errors: u64,
    pub ok: bool,
}

/// The search's outcome, as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// The highest rate that passed (None: even the first step failed).
    pub rate: Option<f64>,
    pub step_seconds: f64,
    pub warmup_seconds: f64,
    pub precision: f64,
    pub steps: Vec<Step>,
}

/// The search state.
#[derive(Debug, Clone)]
pub struct Search {
    rate: f64,
    precision: f64,
    /// Highest rate that passed, lowest that failed.
    pass: Option<f64>,
    fail: Option<f64>,
    steps: u32,
}

impl Search {
    pub fn new(plan: &CapacityPlan) -> Self {
        Search {
            rate: plan.first.clamp(f64::MIN_POSITIVE, MAX_RATE),
            precision: plan.precision,
            pass: None,
            fail: None,
            steps: 0,
        }
    }

    /// The rate of the step to run now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The answer so far.
    pub fn answer(&self) -> Option<f64> {
        self.pass
    }

    /// Records how the step at `rate()` went; the next step's rate, or
    /// None when the search is over.
    pub fn record(&mut self, ok: bool) -> Option<f64> {
        self.steps += 1;
        match ok {
            true => self.pass = Some(self.rate),
            false => self.fail = Some(self.rate),
        }
        if self.steps >= MAX_STEPS {
            return None;
        }
        let next = match (self.pass, self.fail) {
            (None, _) => return None,
            (Some(p), None) if p >= MAX_RATE => return None,
            (Some(p), None) => (p * 2.0).min(MAX_RATE),
            (Some(p), Some(f)) => {
                if f - p <= self.precision * f {
                    return None;
                }
                (p + f) / 2.0
            }
        };
        self.rate = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(first: f64) -> CapacityPlan {
        CapacityPlan {
            first,
            step: Duration::from_secs(5),
            precision: 0.05,
        }
    }

    /// Runs the search against a server whose capacity is `knee`.
    fn search(first: f64, knee: f64) -> (Option<f64>, Vec<f64>) {
        let mut s = Search::new(&plan(first));
        let mut rates = vec![s.rate()];
        while let Some(r) = s.record(s.rate() <= knee) {
            rates.push(r);
        }
        (s.answer(), rates)
    }

    #[test]
    fn doubles_then_bisects_to_the_precision() {
        let (answer, rates) = search(100.0, 400.0);
        assert_eq!(&rates[..4], [100.0, 200.0, 400.0, 800.0]);
        let a = answer.unwrap();
        assert!((0.95 * 400.0..=400.0).contains(&a), "{a} {rates:?}");
        for knee in [13.0, 777.0, 5000.0, 123_456.0] {
            let (a, rates) = search(10.0, knee);
            let a = a.unwrap();
            assert!((0.95 * knee..=knee).contains(&a), "{knee}: {a}");
            assert!(rates.len() < MAX_STEPS as usize);
        }
    }

    #[test]
    fn a_first_step_that_fails_finds_nothing() {
        let (answer, rates) = search(100.0, 50.0);
        assert_eq!((answer, rates.len()), (None, 1));
    }

    #[test]
    fn bounded_in_steps_and_rate() {
        let (answer, rates) = search(1e6, f64::INFINITY);
        assert_eq!(answer, Some(MAX_RATE));
        assert!(rates.len() <= 5);
        let mut s = Search::new(&plan(1.0));
        let mut n = 1;
        // A server that passes and fails at random cannot keep it going.
        while s.record(n % 3 != 0).is_some() {
            n += 1;
        }
        assert!(n <= MAX_STEPS);
        assert_eq!(plan(1.0).warmup(), Duration::from_secs(1));
    }
}
