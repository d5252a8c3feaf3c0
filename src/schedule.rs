//! When to try again: the poll interval of a job by its age, and the backoff of a request
//! whose submission failed. Pure functions, so the rules can be read and tested alone.

use std::time::Duration;

use rand::Rng;

/// Wait before the next check of a job that is `age` old.
///
/// A job is checked at fixed points of its life: `initial`, `2 × initial`, `4 × initial`,
/// … (the gap doubling) until the gap reaches `max`, then every `max`. With 10 s and 5 min:
/// at 10 s, 20 s, 40 s, 80 s, 160 s, 320 s, 620 s, 920 s, … of age. Quick news of short
/// jobs, few calls for long ones (image copies take hours).
///
/// The points hang on the job's creation, not on when it was last checked, so jobs
/// submitted together stay due together and keep sharing JobResult calls even when one
/// was checked a little early. The next point is the first one later than `age + early`,
/// where `early` is how far ahead of its point a job may be checked alongside others.
pub fn next_check_in(age: Duration, initial: Duration, max: Duration, early: Duration) -> Duration {
    let threshold = age + early;
    let mut point = initial;
    let mut gap = initial;
    while point <= threshold && gap < max {
        point += gap;
        gap = (gap * 2).min(max);
        if gap >= max {
            break;
        }
    }
    if point <= threshold {
        let behind = (threshold - point).as_secs_f64();
        let steps = (behind / max.as_secs_f64()).floor() + 1.0;
        point += max.mul_f64(steps);
    }
    point.saturating_sub(age)
}

/// Wait before attempt `attempt + 1` of a request whose attempt `attempt` (1-based) failed
/// transiently: `initial × 2^(attempt-1)`, capped at `max`, then a random part of up to
/// a quarter taken off, so that many requests failing together do not retry together.
pub fn retry_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = initial.saturating_mul(1 << exponent).min(max);
    let jitter = rand::rng().random_range(0.0..=0.25);
    full.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// The checkpoints of a job polled exactly on time from creation to `until`.
    fn points(initial: u64, max: u64, until: u64) -> Vec<u64> {
        let mut age = Duration::ZERO;
        let mut seen = Vec::new();
        while age < S(until) {
            age += next_check_in(age, S(initial), S(max), Duration::ZERO);
            seen.push(age.as_secs());
        }
        seen
    }

    #[test]
    fn checks_come_at_doubling_points_of_age_then_every_max() {
        assert_eq!(
            points(10, 300, 1000),
            [10, 20, 40, 80, 160, 320, 620, 920, 1220]
        );
        assert_eq!(points(1, 2, 8), [1, 2, 4, 6, 8]);
        assert_eq!(points(10, 10, 40), [10, 20, 30, 40]);
    }

    #[test]
    fn next_check_waits_for_the_first_point_after_age() {
        let cases = [
            ("brand new", 0.0, 10.0),
            ("just before the first point", 9.5, 0.5),
            ("right on a point", 20.0, 20.0),
            ("between points", 50.0, 30.0),
            ("in the capped part", 700.0, 220.0),
            ("two days old", 172_800.0, 20.0),
        ];
        for (name, age, want) in cases {
            let got = next_check_in(Duration::from_secs_f64(age), S(10), S(300), Duration::ZERO);
            assert!((got.as_secs_f64() - want).abs() < 1e-6, "{name}: {got:?}");
        }
    }

    #[test]
    fn a_job_checked_early_keeps_its_points() {
        // Checked 0.3 s before its 20 s point, alongside others: the 20 s point counts as
        // done and the next check is at 40 s of age, not a moment later.
        let got = next_check_in(
            Duration::from_secs_f64(19.7),
            S(10),
            S(300),
            Duration::from_millis(500),
        );
        assert!((got.as_secs_f64() - 20.3).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn retry_delay_grows_then_caps_with_bounded_jitter() {
        let cases = [
            (1, S(10)),
            (2, S(20)),
            (3, S(40)),
            (7, S(600)),
            (40, S(600)),
        ];
        for (attempt, full) in cases {
            for _ in 0..50 {
                let delay = retry_delay(attempt, S(10), S(600));
                assert!(delay <= full, "attempt {attempt}: {delay:?} above {full:?}");
                assert!(
                    delay >= full.mul_f64(0.75),
                    "attempt {attempt}: {delay:?} too short"
                );
            }
        }
    }
}
