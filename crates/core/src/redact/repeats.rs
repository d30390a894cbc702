//! Every other copy of the secrets a scan found, in one sampled pass.
//!
//! A secret found once is redacted wherever else it appears, so the text is
//! searched for all the secrets found in it: a handful in a tool output,
//! thousands in a large log. A multi-pattern automaton walks every byte, and
//! with thousands of patterns no literal prefilter applies; this search reads
//! one 4-byte gram every `stride` bytes instead.
//!
//! Every secret is at least `min` bytes long, so any copy of it covers the
//! grams starting at its offsets `0..stride` (`stride = min - 3`, capped):
//! exactly one of those offsets is a multiple of `stride` in the text. The
//! grams of each secret at those offsets go into a hashed table behind a
//! small bit filter; a sampled gram that passes the filter names the secrets
//! and offsets to compare at. Matches are leftmost-longest and do not
//! overlap, as an Aho-Corasick search with that match kind would report
//! them; linear in the text's length (the sampling resumes after each
//! match).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Longest stride: more would grow the table for little gain.
const MAX_STRIDE: usize = 16;

/// The grams of a set of needles, and the filter in front of them.
pub(super) struct Repeats<'v> {
    needles: Vec<&'v [u8]>,
    /// Each needle's index, by its bytes.
    index: HashMap<&'v [u8], usize, BuildHasherDefault<WordHasher>>,
    /// Bytes per gram (4, or the shortest needle's length when shorter).
    gram: usize,
    stride: usize,
    /// `(gram, offset, length)` of the needles without duplicates, grouped
    /// by bucket: needles that share a gram at the same offset and have the
    /// same length are told apart by `index`, not one by one.
    table: Vec<(u32, u16, u16)>,
    /// Where each bucket's entries start in `table` (one more at the end).
    buckets: Vec<u32>,
    bucket_shift: u32,
    filter: Vec<u64>,
    shift: u32,
}

impl<'v> Repeats<'v> {
    /// `needles` must be distinct, non-empty and at most 65,535 bytes long.
    pub(super) fn new(needles: Vec<&'v [u8]>) -> Self {
        let min = needles.iter().map(|v| v.len()).min().unwrap_or(1).max(1);
        let gram = min.min(4);
        let stride = (min - gram + 1).min(MAX_STRIDE);
        let mut table = Vec::with_capacity(needles.len() * stride);
        for v in &needles {
            for off in 0..stride {
                // Both fit u16: the stride is small, needles are short.
                table.push((read_gram(v, off, gram), off as u16, v.len() as u16));
            }
        }
        table.sort_unstable();
        table.dedup();
        // About two buckets per entry, so that a bucket holds one gram or two.
        let nbuckets = (table.len() * 2).next_power_of_two().clamp(64, 1 << 22);
        let bucket_shift = 32 - nbuckets.trailing_zeros();
        table.sort_by_key(|&(g, _, _)| hash(g, bucket_shift));
        let mut buckets = vec![0u32; nbuckets + 1];
        for &(g, _, _) in &table {
            buckets[hash(g, bucket_shift) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        // About 16 filter bits per entry: a false pass every ~16 samples at most.
        let bits = (table.len() * 16).next_power_of_two().clamp(64, 1 << 24);
        let shift = 32 - bits.trailing_zeros();
        let mut filter = vec![0u64; bits / 64];
        for &(g, _, _) in &table {
            let h = hash(g, shift);
            filter[h / 64] |= 1 << (h % 64);
        }
        let index = needles.iter().enumerate().map(|(i, &v)| (v, i)).collect();
        Repeats { needles, index, gram, stride, table, buckets, bucket_shift, filter, shift }
    }

    /// The needle with index `i`.
    pub(super) fn needle(&self, i: usize) -> &'v [u8] {
        self.needles[i]
    }

    /// Calls `each(start, end, needle)` for every leftmost-longest,
    /// non-overlapping match in `t`, in order.
    pub(super) fn for_each_match(&self, t: &[u8], mut each: impl FnMut(usize, usize, usize)) {
        let (gram, stride) = (self.gram, self.stride);
        let mut batch: Vec<(usize, usize)> = Vec::new(); // (start, length)
        let mut cur = 0; // end of the last match
        let mut k = 0; // sampled position, a multiple of `stride`
        while k + gram <= t.len() {
            let g = read_gram(t, k, gram);
            let h = hash(g, self.shift);
            if self.filter[h / 64] & (1 << (h % 64)) != 0 {
                // The sample at `k` sees the copies that start in
                // `k - stride + 1 ..= k`: after every earlier sample's.
                batch.clear();
                let b = hash(g, self.bucket_shift);
                let entries = &self.table[self.buckets[b] as usize..self.buckets[b + 1] as usize];
                for &(eg, off, len) in entries {
                    if eg != g {
                        continue;
                    }
                    let (off, len) = (usize::from(off), usize::from(len));
                    if off <= k && k - off >= cur && k - off + len <= t.len() {
                        batch.push((k - off, len));
                    }
                }
                batch.sort_unstable_by_key(|&(p, len)| (p, Reverse(len)));
                for &(p, len) in &batch {
                    if p >= cur
                        && let Some(&i) = self.index.get(&t[p..p + len])
                    {
                        each(p, p + len, i);
                        cur = p + len;
                    }
                }
                if cur > k + stride {
                    // Samples before `cur` can only see copies that start
                    // inside the last match.
                    k = cur.div_ceil(stride) * stride;
                    continue;
                }
            }
            k += stride;
        }
    }
}

/// `n` (1 to 4) bytes of `t` at `at`, as a little-endian number.
#[inline(always)]
fn read_gram(t: &[u8], at: usize, n: usize) -> u32 {
    if n == 4 {
        u32::from_le_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]])
    } else {
        t[at..at + n].iter().rev().fold(0, |g, &b| (g << 8) | u32::from(b))
    }
}

#[inline(always)]
fn hash(g: u32, shift: u32) -> usize {
    (g.wrapping_mul(0x9E37_79B1) >> shift) as usize
}

/// A fast, non-keyed hash of byte strings, eight bytes at a time (the keys
/// are the secrets just found in the same text; nothing to defend against).
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an Aho-Corasick search with leftmost-longest matches reports,
    /// computed the slow way.
    fn naive(t: &[u8], needles: &[&[u8]]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut p = 0;
        while p < t.len() {
            let best = (0..needles.len())
                .filter(|&i| t[p..].starts_with(needles[i]))
                .max_by_key(|&i| (needles[i].len(), Reverse(i)));
            match best {
                Some(i) => {
                    out.push((p, p + needles[i].len(), i));
                    p += needles[i].len();
                }
                None => p += 1,
            }
        }
        out
    }

    fn fast(t: &[u8], needles: &[&[u8]]) -> Vec<(usize, usize, usize)> {
        let r = Repeats::new(needles.to_vec());
        let mut out = Vec::new();
        r.for_each_match(t, |s, e, i| out.push((s, e, i)));
        out
    }

    #[test]
    fn matches_like_a_leftmost_longest_search() {
        let cases: &[(&str, &[&str])] = &[
            ("a FAKEpw9x7 b FAKEpw9x7", &["FAKEpw9x7"]),
            ("xxFAKEpw9x7FAKEpw9x7yy", &["FAKEpw9x7"]),
            ("abcabcabcabcabc", &["abcabc", "bcabcabc"]),
            ("abc", &["abc"]),
            ("ab", &["abc"]),
            ("zzzabcdefgzz abcd", &["abcd", "abcdefg", "cdef"]),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &["aaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaa"]),
            ("p:ab p:abc p:a", &["ab", "abc", "a"]),
            ("", &["abc"]),
        ];
        for &(t, needles) in cases {
            let needles: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
            assert_eq!(fast(t.as_bytes(), &needles), naive(t.as_bytes(), &needles), "{t:?} {needles:?}");
        }
    }

    #[test]
    fn many_needles_of_mixed_lengths() {
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"abcd";
        let text: Vec<u8> = (0..20_000).map(|_| alphabet[(next() % 4) as usize]).collect();
        let mut needles: Vec<Vec<u8>> = (0..300)
            .map(|_| {
                let len = 3 + (next() % 30) as usize;
                let at = (next() % (text.len() as u64 - 40)) as usize;
                text[at..at + len].to_vec()
            })
            .collect();
        needles.sort();
        needles.dedup();
        let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
        assert_eq!(fast(&text, &needles), naive(&text, &needles));
    }
}
