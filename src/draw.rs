//! draw: the run's random choices. Every random draw (the --size-mix
//! class of each message, the -R pauses, the --arrival=poisson gaps)
//! comes from a stream derived from one run seed: `--seed`, or one taken
//! from the operating system at start. So a run with `--seed` draws the
//! same sequences every time, and each purpose (and each session) has a
//! stream of its own that no other draw disturbs.
//!
//! `stream` is the one place a stream is made: anything that must tell
//! runs apart (a shard of a split run, say) is mixed in there.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a stream is for; part of its derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The size class of each message (the dispatcher's, one stream).
    SizeMix = 1,
    /// The -R pauses (one stream per session).
    Delay = 2,
    /// The --arrival=poisson gaps (the dispatcher's, one stream).
    Arrival = 3,
}

/// The run seed: --seed, or a fresh one from the operating system.
pub fn run_seed(given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| StdRng::from_entropy().gen())
}

/// The seed of shard K of N of a run seeded with `seed`: the run seed
/// itself for a whole run (`--shard=1/1` draws what no --shard draws),
/// a different one for every shard of a split run.
pub fn shard_seed(seed: u64, shard: crate::scale::Shard) -> u64 {
    if shard.count <= 1 {
        return seed;
    }
    mix64(seed ^ mix64(u64::from(shard.index) << 32 | u64::from(shard.count)))
}

/// The stream for `purpose` and `index` (a session number, or 0) of the
/// run seeded with `seed`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> StdRng {
    // splitmix64 rounds: nearby seeds, purposes and indexes give
    // unrelated streams (a plain XOR would make seed 1 / index 0 and
    // seed 0 / index 1 the same).
    let key = mix64(mix64(seed) ^ mix64((purpose as u64) << 56 ^ index));
    StdRng::seed_from_u64(key)
}

/// The splitmix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// --size-mix: weighted classes; `pick` gives a class index.
#[derive(Debug, Clone)]
pub struct SizeMix {
    /// Payload sizes, in the order given.
    pub sizes: Vec<u32>,
    /// Running sums of the weights (the last is the total).
    upto: Vec<u64>,
}

impl SizeMix {
    /// From (size, weight) pairs with weights > 0.
    pub fn new(classes: &[(u32, u64)]) -> SizeMix {
        let mut total = 0;
        let upto = classes
            .iter()
            .map(|&(_, w)| {
                total += w;
                total
            })
            .collect();
        SizeMix {
            sizes: classes.iter().map(|&(s, _)| s).collect(),
            upto,
        }
    }

    /// A class index drawn with the weights.
    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        let total = self.upto.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let x = rng.gen_range(0..total);
        self.upto.partition_point(|&u| u <= x)
    }

    /// The weighted mean payload size.
    #[cfg(test)]
    pub fn mean(&self) -> f64 {
        let mut last = 0;
        let mut sum = 0.0;
        for (&s, &u) in self.sizes.iter().zip(&self.upto) {
            sum += f64::from(s) * (u - last) as f64;
            last = u;
        }
        sum / last.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_draw_different_streams() {
        use crate::scale::Shard;
        assert_eq!(shard_seed(7, Shard::WHOLE), 7);
        let a = shard_seed(7, Shard { index: 1, count: 2 });
        let b = shard_seed(7, Shard { index: 2, count: 2 });
        assert!(a != b && a != 7 && b != 7);
        let draw = |s| stream(s, Purpose::SizeMix, 0).gen::<u64>();
        assert_ne!(draw(a), draw(b));
    }

    #[test]
    fn streams_repeat_and_differ() {
        let draw = |seed, p, i| stream(seed, p, i).gen::<u64>();
        assert_eq!(draw(7, Purpose::Delay, 3), draw(7, Purpose::Delay, 3));
        assert_ne!(draw(7, Purpose::Delay, 3), draw(7, Purpose::Delay, 4));
        assert_ne!(draw(7, Purpose::Delay, 0), draw(7, Purpose::Arrival, 0));
        assert_ne!(draw(1, Purpose::Delay, 0), draw(0, Purpose::Delay, 1));
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = SizeMix::new(&[(10, 6), (20, 3), (30, 1)]);
        let mut rng = stream(1, Purpose::SizeMix, 0);
        let mut seen = [0u32; 3];
        for _ in 0..100_000 {
            seen[mix.pick(&mut rng)] += 1;
        }
        for (n, want) in seen.iter().zip([60_000, 30_000, 10_000]) {
            assert!(n.abs_diff(want) < 1_000, "{seen:?}");
        }
        assert!((mix.mean() - 15.0).abs() < 1e-9);
    }

    #[test]
    fn one_class_is_always_picked() {
        let mix = SizeMix::new(&[(5, 1)]);
        let mut rng = stream(2, Purpose::SizeMix, 0);
        assert!((0..100).all(|_| mix.pick(&mut rng) == 0));
    }
}
