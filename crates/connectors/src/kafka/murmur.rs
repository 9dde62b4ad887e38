//! The Java client's default partitioner for keyed records: `murmur2(key) & 0x7fffffff` modulo
//! the partition count, so pipectl puts a key where a Java producer (and Kafka Connect, and
//! librdkafka's `murmur2_random`) would.

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), with Java's
/// wrapping `int` arithmetic.
// Multiplications wrap by design (wrapping_mul); the only other arithmetic is `8 * i` with
// i < 3.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ len;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition a keyed record goes to among `partitions` (at least 1).
pub(crate) fn partition_for(key: &[u8], partitions: usize) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    let n = u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
    positive.checked_rem(n).unwrap_or(0) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn matches_the_java_client() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert!((0..4).contains(&partition_for(b"customer-42", 4)));
    }
}
