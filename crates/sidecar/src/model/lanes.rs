//! Lanes: the fixed partition of series that delivery tracking is kept in, whatever the shard
//! count.
//!
//! A series belongs to lane `hash % LANES` for ever; a shard owns a contiguous range of lanes,
//! which changes only when the shard count does. Delivery counts and marks are kept per lane, so
//! they stay meaningful across resharding and across restarts with another shard count. This
//! module is arithmetic only.

use std::ops::Range;

/// Number of lanes, and so the most shards there can be.
pub const LANES: usize = 1024;

/// The lane of a series, by its hash.
pub fn lane_of(hash: u64) -> usize {
    (hash % LANES as u64) as usize
}

/// The shard owning `lane` when there are `shards` shards.
pub fn shard_of_lane(lane: usize, shards: usize) -> usize {
    lane * shards / LANES
}

/// The lanes shard `shard` owns when there are `shards` shards (contiguous, so that one write
/// covers all of a shard's delivery marks).
pub fn lanes_of_shard(shard: usize, shards: usize) -> Range<usize> {
    let start = (shard * LANES).div_ceil(shards);
    let end = ((shard + 1) * LANES).div_ceil(shards);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_has_exactly_one_shard_and_ranges_agree() {
        for shards in [1, 2, 3, 4, 7, 100, 333, 1000, LANES] {
            let mut covered = 0;
            for shard in 0..shards {
                let lanes = lanes_of_shard(shard, shards);
                assert_eq!(lanes.start, covered, "{shards} shards, shard {shard}");
                assert!(
                    !lanes.is_empty(),
                    "{shards} shards, shard {shard} owns no lane"
                );
                for lane in lanes.clone() {
                    assert_eq!(shard_of_lane(lane, shards), shard);
                }
                covered = lanes.end;
            }
            assert_eq!(covered, LANES);
        }
    }

    #[test]
    fn lanes_spread_hashes() {
        assert_eq!(lane_of(5), 5);
        assert_eq!(lane_of(LANES as u64 + 3), 3);
        assert_eq!(lane_of(u64::MAX), (u64::MAX % LANES as u64) as usize);
    }
}
