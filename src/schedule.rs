//! schedule: the --rate and --stages arrival times, and the target rate
//! they make. Pure: no clock is read here; the dispatcher asks for the
//! next start and sleeps until it.
//!
//! A rate profile is piecewise linear in time; arrival n (from 0) is due
//! when the profile's running count of arrivals reaches n (uniform), or
//! after n exponential gaps of mean 1 in that count (Poisson). Ramping the
//! rate so bends time, never the count: a stage gets the arrivals its
//! area holds.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::draw;
use crate::plan::Arrival;

/// A rate (arrivals per second) over time: linear pieces, one after
/// the other from 0 s; past the last piece, no arrivals.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Piece {
    /// Seconds from the start of the profile.
    from: f64,
    /// Seconds long (may be infinite: a constant --rate).
    len: f64,
    r0: f64,
    r1: f64,
    /// Arrivals before `from`.
    before: f64,
}

impl Piece {
    /// Arrivals in the first `x` seconds of the piece.
    fn count(&self, x: f64) -> f64 {
        let x = x.clamp(0.0, self.len);
        if x == 0.0 {
            return 0.0;
        }
        let slope = if self.len.is_finite() {
            (self.r1 - self.r0) / self.len
        } else {
            0.0
        };
        self.r0 * x + slope * x * x / 2.0
    }

    /// Seconds into the piece at which `n` arrivals are in (None if the
    /// piece holds fewer).
    fn time_of(&self, n: f64) -> Option<f64> {
        if n > self.count(self.len) {
            return None;
        }
        let a = match self.len.is_finite() {
            true => (self.r1 - self.r0) / (2.0 * self.len),
            false => 0.0,
        };
        let b = self.r0;
        // a x^2 + b x = n, in the form that is stable when a is 0.
        let root = (b * b + 4.0 * a * n).max(0.0).sqrt();
        let denominator = b + root;
        if denominator <= 0.0 {
            return Some(0.0);
        }
        Some((2.0 * n / denominator).min(self.len))
    }
}

impl Profile {
    /// A constant rate forever.
    pub fn constant(rate: f64) -> Self {
        let mut p = Profile { pieces: Vec::new() };
        p.push(f64::INFINITY, rate, rate);
        p
    }

    /// --stages: from `start` per second, each stage ramps linearly to its
    /// rate over its duration.
    pub fn stages(start: f64, stages: &[(Duration, f64)]) -> Self {
        let mut p = Profile { pieces: Vec::new() };
        let mut from = start;
        for &(d, to) in stages {
            p.push(d.as_secs_f64(), from, to);
            from = to;
        }
        p
    }

    /// Adds a piece after the last one.
    pub fn push(&mut self, len: f64, r0: f64, r1: f64) {
        let (from, before) = match self.pieces.last() {
            None => (0.0, 0.0),
            Some(l) => (l.from + l.len, l.before + l.count(l.len)),
        };
        self.pieces.push(Piece {
            from,
            len,
            r0,
            r1,
            before,
        });
    }

    /// Arrivals due in the first `t` seconds.
    pub fn count(&self, t: f64) -> f64 {
        let mut total = 0.0;
        for p in &self.pieces {
            if t <= p.from {
                break;
            }
            total = p.before + p.count(t - p.from);
        }
        total
    }

    /// The mean target rate over [a, b) seconds.
    pub fn mean_rate(&self, a: f64, b: f64) -> f64 {
        match b > a {
            true => (self.count(b) - self.count(a)) / (b - a),
            false => 0.0,
        }
    }

    /// When the running count reaches `n` (None: past the end).
    pub fn time_of(&self, n: f64) -> Option<f64> {
        self.pieces
            .iter()
            .find_map(|p| Some(p.from + p.time_of(n - p.before)?))
    }

    #[cfg(test)]
    /// Seconds the profile lasts (infinite for a constant rate).
    pub fn len(&self) -> f64 {
        self.pieces.last().map_or(0.0, |l| l.from + l.len)
    }
}

/// Start times on a rate profile from `start`.
pub struct Schedule {
    start: Instant,
    profile: Profile,
    /// The running count of the next arrival.
    next: f64,
    poisson: Option<StdRng>,
}

impl Schedule {
    /// Poisson gaps are drawn from the run seed's arrival stream.
    #[cfg(test)]
    pub fn new(
        start: Instant,
        rate: f64,
        arrival: Arrival,
        seed: u64,
    ) -> Self {
        Self::on(start, Profile::constant(rate), arrival, seed, 0)
    }

    /// Arrivals on `profile`; `stream` tells the Poisson draws of one
    /// part of a run (a capacity step) from another's.
    pub fn on(
        start: Instant,
        profile: Profile,
        arrival: Arrival,
        seed: u64,
        stream: u64,
    ) -> Self {
        let rng = || draw::stream(seed, draw::Purpose::Arrival, stream);
        Schedule {
            start,
            profile,
            next: 0.0,
            poisson: (arrival == Arrival::Poisson).then(rng),
        }
    }

    /// The next arrival time; None when the profile has ended. Uniform
    /// arrivals are evenly spaced in the running count; Poisson arrivals
    /// have exponential gaps with the same mean.
    pub fn next_start(&mut self) -> Option<Instant> {
        let secs = self.profile.time_of(self.next)?;
        let gap = match &mut self.poisson {
            None => 1.0,
            Some(rng) => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                -u.ln()
            }
        };
        self.next += gap;
        Some(self.start + Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 4.0, Arrival::Uniform, 0);
        let at: Vec<_> =
            (0..5).map(|_| s.next_start().unwrap() - t0).collect();
        assert_eq!(at[0], Duration::ZERO);
        assert_eq!(at[4], Duration::from_secs(1));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0, Arrival::Poisson, 7);
        let n = 20_000;
        let mut last = t0;
        for _ in 0..n {
            last = s.next_start().unwrap();
        }
        let mean = (last - t0).as_secs_f64() / f64::from(n - 1);
        assert!((mean - 0.01).abs() < 0.0005, "mean gap {mean}");
    }

    #[test]
    fn poisson_arrivals_repeat_with_the_seed() {
        let t0 = Instant::now();
        let starts = |seed| {
            let mut s = Schedule::new(t0, 10.0, Arrival::Poisson, seed);
            (0..20).map(|_| s.next_start()).collect::<Vec<_>>()
        };
        assert_eq!(starts(3), starts(3));
        assert_ne!(starts(3), starts(4));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_ramp_holds_its_area_of_arrivals() {
        // 0 -> 100/s over 10 s (500 arrivals), then 100/s for 5 s (500).
        let p = Profile::stages(0.0, &[(secs(10), 100.0), (secs(5), 100.0)]);
        assert_eq!(p.len(), 15.0);
        assert!((p.count(10.0) - 500.0).abs() < 1e-9);
        assert!((p.count(15.0) - 1000.0).abs() < 1e-9);
        assert!((p.count(99.0) - 1000.0).abs() < 1e-9);
        assert!((p.mean_rate(4.0, 5.0) - 45.0).abs() < 1e-9);
        assert!((p.mean_rate(12.0, 13.0) - 100.0).abs() < 1e-9);
        for n in [0.0, 1.0, 125.0, 499.5, 500.0, 777.0, 1000.0] {
            let t = p.time_of(n).unwrap();
            assert!((p.count(t) - n).abs() < 1e-6, "{n} at {t}");
        }
        assert_eq!(p.time_of(1000.5), None);
        let t0 = Instant::now();
        let mut s = Schedule::on(t0, p, Arrival::Uniform, 0, 0);
        let mut n = 0;
        while s.next_start().is_some() {
            n += 1;
        }
        assert_eq!(n, 1001, "arrivals 0..=1000");
    }

    #[test]
    fn ramps_down_and_idle_stages() {
        let p = Profile::stages(50.0, &[(secs(2), 0.0), (secs(3), 0.0)]);
        assert!((p.count(2.0) - 50.0).abs() < 1e-9);
        assert_eq!(p.count(5.0), p.count(2.0));
        assert!((p.time_of(50.0).unwrap() - 2.0).abs() < 1e-9);
        let c = Profile::constant(10.0);
        assert!(c.len().is_infinite());
        assert!((c.time_of(25.0).unwrap() - 2.5).abs() < 1e-9);
        assert!((c.mean_rate(3.0, 4.0) - 10.0).abs() < 1e-9);
    }
}
