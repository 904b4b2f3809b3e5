//! Exact, order-independent summation of `f64` values.
//!
//! [`ExactSum`] is a Kulisch-style "superaccumulator": a two's-complement
//! fixed-point integer whose least significant bit weighs 2^-1074 (the
//! smallest subnormal double), wide enough to hold every finite double
//! exactly, with 64 bits of headroom above the largest one (so up to 2^63
//! additions cannot overflow) and a sign bit on top. Adding a double is an
//! exact integer addition, so the accumulated value is the exact sum of the
//! inputs whatever their order, and [`ExactSum::value`] rounds it to the
//! nearest double only once, at the end.
//!
//! The representation is canonical: the same multiset of inputs, added in any
//! order and through any tree of [`ExactSum::merge`]s, gives an equal struct,
//! and therefore identical serialized (checkpoint) bytes.
//!
//! NaNs and infinities cannot be held in the fixed-point number; they are
//! counted separately and decide the result as IEEE addition would.

use serde::{Deserialize, Serialize};

/// Number of 64-bit limbs: 34 × 64 = 2176 bits. The largest finite double
/// has its top bit at position 2097 (2^1023 is bit 1023 + 1074), so bits up
/// to 2161 hold the sum of 2^63 of them and bit 2175 is the sign.
const LIMBS: usize = 34;
/// Mask of the 52 stored fraction bits of a double.
const FRAC_MASK: u64 = (1 << 52) - 1;
/// Mask of the 11 exponent bits (after shifting them down by 52).
const EXP_MASK: u64 = 0x7ff;
/// Bit pattern of `+inf`: exponent field 2047, fraction 0.
const INF_BITS: u64 = EXP_MASK << 52;
/// Mask of a 53-bit significand (implicit bit included).
const SIGNIFICAND_MASK: u64 = (1 << 53) - 1;
/// Lowest magnitude bit position whose top bit already rounds to infinity:
/// a top bit at position `p` means a biased exponent of `p - 51`, and 2047
/// is infinity.
const OVERFLOW_BIT: usize = 2047 + 51;

/// The exact sum of a multiset of `f64` values, rounded once on demand.
///
/// Add values with [`add`](Self::add), combine partial sums with
/// [`merge`](Self::merge) and read the correctly rounded result with
/// [`value`](Self::value). Equal multisets of inputs give equal structs
/// (and equal serialized bytes), whatever the order of additions and merges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ExactSumRepr")]
pub struct ExactSum {
    /// The finite part: a two's-complement integer in units of 2^-1074,
    /// least significant limb first; always exactly `LIMBS` long.
    limbs: Vec<u64>,
    /// How many NaNs (of any sign or payload) were added.
    nans: u64,
    /// How many `+inf` were added.
    pos_infs: u64,
    /// How many `-inf` were added.
    neg_infs: u64,
}

/// The serialized shape of [`ExactSum`], checked on deserialization (a limb
/// vector of the wrong length is rejected instead of panicking later).
#[derive(Deserialize)]
#[serde(rename = "ExactSum")]
struct ExactSumRepr {
    limbs: Vec<u64>,
    nans: u64,
    pos_infs: u64,
    neg_infs: u64,
}

impl TryFrom<ExactSumRepr> for ExactSum {
    type Error = String;

    fn try_from(repr: ExactSumRepr) -> Result<Self, String> {
        if repr.limbs.len() != LIMBS {
            return Err(format!(
                "ExactSum: expected {LIMBS} limbs, found {}",
                repr.limbs.len()
            ));
        }
        Ok(ExactSum {
            limbs: repr.limbs,
            nans: repr.nans,
            pos_infs: repr.pos_infs,
            neg_infs: repr.neg_infs,
        })
    }
}

impl Default for ExactSum {
    fn default() -> Self {
        Self::new()
    }
}

impl ExactSum {
    /// An empty sum (its [`value`](Self::value) is `+0.0`).
    #[must_use]
    pub fn new() -> ExactSum {
        ExactSum {
            limbs: vec![0; LIMBS],
            nans: 0,
            pos_infs: 0,
            neg_infs: 0,
        }
    }

    /// Adds `x` exactly. Zeros (`+0.0` and `-0.0`) add nothing; NaNs and
    /// infinities are counted.
    ///
    /// Touches the two limbs the significand spans, plus carry or borrow
    /// propagation.
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        let negative = bits >> 63 != 0;
        let ef = (bits >> 52) & EXP_MASK;
        let frac = bits & FRAC_MASK;
        if ef == EXP_MASK {
            let counter = if frac != 0 {
                &mut self.nans
            } else if negative {
                &mut self.neg_infs
            } else {
                &mut self.pos_infs
            };
            *counter = counter.saturating_add(1);
            return;
        }
        let (significand, shift) = if ef == 0 {
            (frac, 0)
        } else {
            (frac | 1 << 52, ef - 1)
        };
        if significand == 0 {
            return;
        }
        // shift <= 2045, so index <= 31 and the two words fit below the top.
        let index = (shift / 64) as usize;
        let wide = u128::from(significand) << (shift % 64);
        let words = [wide as u64, (wide >> 64) as u64];
        if negative {
            self.sub_words(index, words);
        } else {
            self.add_words(index, words);
        }
    }

    /// Adds `words` (least significant first) at limb `index`, carrying up.
    fn add_words(&mut self, index: usize, words: [u64; 2]) {
        let mut carry = false;
        for (i, limb) in self.limbs[index..].iter_mut().enumerate() {
            let word = words.get(i).copied().unwrap_or(0);
            if i >= words.len() && !carry {
                break;
            }
            let (s1, c1) = limb.overflowing_add(word);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 | c2;
        }
    }

    /// Subtracts `words` (least significant first) at limb `index`,
    /// borrowing up.
    fn sub_words(&mut self, index: usize, words: [u64; 2]) {
        let mut borrow = false;
        for (i, limb) in self.limbs[index..].iter_mut().enumerate() {
            let word = words.get(i).copied().unwrap_or(0);
            if i >= words.len() && !borrow {
                break;
            }
            let (d1, b1) = limb.overflowing_sub(word);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *limb = d2;
            borrow = b1 | b2;
        }
    }

    /// Adds everything `other` holds, exactly, as if each of its values had
    /// been added to `self`.
    pub fn merge(&mut self, other: &ExactSum) {
        let mut carry = false;
        for (limb, &word) in self.limbs.iter_mut().zip(&other.limbs) {
            let (s1, c1) = limb.overflowing_add(word);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 | c2;
        }
        self.nans = self.nans.saturating_add(other.nans);
        self.pos_infs = self.pos_infs.saturating_add(other.pos_infs);
        self.neg_infs = self.neg_infs.saturating_add(other.neg_infs);
    }

    /// True if nothing but zeros was added (or everything cancelled exactly)
    /// and no NaN or infinity was added.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.nans == 0
            && self.pos_infs == 0
            && self.neg_infs == 0
            && self.limbs.iter().all(|&l| l == 0)
    }

    /// The exact sum rounded once to the nearest `f64`, ties to even.
    ///
    /// As IEEE addition of the exact values: NaN if any NaN was added or both
    /// `+inf` and `-inf` were; otherwise the infinity that was added, if any;
    /// otherwise the rounded finite sum, `±inf` if it rounds beyond
    /// `f64::MAX`. An exact zero gives `+0.0`.
    #[must_use]
    pub fn value(&self) -> f64 {
        if self.nans > 0 || (self.pos_infs > 0 && self.neg_infs > 0) {
            return f64::NAN;
        }
        if self.pos_infs > 0 {
            return f64::INFINITY;
        }
        if self.neg_infs > 0 {
            return f64::NEG_INFINITY;
        }
        let negative = self.limbs[LIMBS - 1] >> 63 != 0;
        let mut mag = [0u64; LIMBS];
        mag.copy_from_slice(&self.limbs);
        if negative {
            // Two's-complement negation: invert and add one.
            let mut carry = true;
            for limb in &mut mag {
                let (s, c) = (!*limb).overflowing_add(u64::from(carry));
                *limb = s;
                carry = c;
            }
        }
        let sign = u64::from(negative) << 63;
        let Some(top) = mag.iter().rposition(|&l| l != 0) else {
            return 0.0;
        };
        // Position of the highest set bit of the magnitude.
        let p = top * 64 + (63 - mag[top].leading_zeros() as usize);
        if p <= 52 {
            // Below 2^53 units of 2^-1074 the value is exact, and its bit
            // pattern is the magnitude itself: a subnormal (fraction = value,
            // exponent field 0) or, from 2^52 on, exponent field 1.
            return f64::from_bits(sign | mag[0]);
        }
        if p >= OVERFLOW_BIT {
            return f64::from_bits(sign | INF_BITS);
        }
        // Keep the 53 bits p-52..=p; the value is significand · 2^shift
        // units, i.e. biased exponent shift + 1 = p - 51.
        let shift = p - 52;
        let significand = bits_at(&mag, shift) & SIGNIFICAND_MASK;
        let guard = bits_at(&mag, shift - 1) & 1 != 0;
        let sticky = any_below(&mag, shift - 1);
        let round_up = guard && (sticky || significand & 1 != 0);
        // (shift + 1) << 52 | (significand - 2^52) == (shift << 52) +
        // significand; rounding up to 2^53 carries into the exponent, and
        // a carry to exponent 2047 gives exactly the bits of infinity.
        let bits = ((shift as u64) << 52) + significand + u64::from(round_up);
        f64::from_bits(sign | bits.min(INF_BITS))
    }
}

/// The 64 bits of `mag` starting at bit `pos` (bits past the end are zero).
fn bits_at(mag: &[u64; LIMBS], pos: usize) -> u64 {
    let index = pos / 64;
    let low = u128::from(mag[index]);
    let high = u128::from(mag.get(index + 1).copied().unwrap_or(0));
    ((low | high << 64) >> (pos % 64)) as u64
}

/// True if any bit of `mag` below bit `pos` is set.
fn any_below(mag: &[u64; LIMBS], pos: usize) -> bool {
    let index = pos / 64;
    let mask = (1u64 << (pos % 64)) - 1;
    mag[index] & mask != 0 || mag[..index].iter().any(|&l| l != 0)
}

impl Extend<f64> for ExactSum {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, iter: I) {
        for x in iter {
            self.add(x);
        }
    }
}

impl FromIterator<f64> for ExactSum {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        let mut sum = ExactSum::new();
        sum.extend(iter);
        sum
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn sum(values: &[f64]) -> f64 {
        values.iter().copied().collect::<ExactSum>().value()
    }

    /// 2^e as a double, built from its bits (exact for -1074 <= e <= 1023).
    fn pow2(e: i32) -> f64 {
        if e >= -1022 {
            f64::from_bits(u64::try_from(e + 1023).unwrap() << 52)
        } else {
            f64::from_bits(1 << (e + 1074))
        }
    }

    /// Asserts bit equality, except that NaNs only need to be NaNs.
    fn same(got: f64, want: f64) -> bool {
        if want.is_nan() {
            got.is_nan()
        } else {
            got.to_bits() == want.to_bits()
        }
    }

    #[track_caller]
    fn check(values: &[f64], want: f64) {
        let got = sum(values);
        assert!(
            same(got, want),
            "sum of {values:?}: got {got:e}, want {want:e}"
        );
    }

    /// Python's `math.fsum`: Shewchuk's non-overlapping partials, then the
    /// half-even correction of the final rounding. Correctly rounded as long
    /// as no intermediate sum overflows. Exact zero sums may come out as
    /// `-0.0`; callers compare zeros by value.
    fn fsum(values: &[f64]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &v in values {
            let mut x = v;
            let mut i = 0;
            let mut j = 0;
            while j < partials.len() {
                let mut y = partials[j];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let hi = x + y;
                let lo = y - (hi - x);
                if lo != 0.0 {
                    partials[i] = lo;
                    i += 1;
                }
                x = hi;
                j += 1;
            }
            partials.truncate(i);
            partials.push(x);
        }
        let Some(mut n) = partials.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
        hi
    }

    #[test]
    fn known_cases() {
        check(&[1e100, 1.0, -1e100], 1.0);
        check(&[0.1; 10], 1.0);
        check(&[1e308, 1e308, -1e308], 1e308);
        check(&[f64::MAX, f64::MAX], f64::INFINITY);
        check(&[-f64::MAX, -f64::MAX], f64::NEG_INFINITY);
        check(&[f64::MAX, f64::MAX, -f64::MAX], f64::MAX);
        check(&[f64::MAX, -f64::MAX], 0.0);
        check(&[5e-324, 5e-324], 1e-323);
        check(&[-5e-324, -5e-324], -1e-323);
        check(&[5e-324, -5e-324], 0.0);
        let max_subnormal = f64::from_bits(FRAC_MASK);
        check(&[max_subnormal, 5e-324], f64::MIN_POSITIVE);
        check(&[f64::MIN_POSITIVE, -5e-324], max_subnormal);
        let two53 = pow2(53);
        // Ties to even, and the sticky bit breaking a tie.
        check(&[two53, 1.0], two53);
        check(&[two53, 1.0, pow2(-60)], two53 + 2.0);
        check(&[two53, 1.0, -pow2(-60)], two53);
        check(&[two53, 1.0, pow2(-1074)], two53 + 2.0);
        check(&[two53 + 2.0, 1.0], two53 + 4.0);
        check(&[two53 + 2.0, 1.0, -pow2(-1074)], two53 + 2.0);
        check(&[-two53, -1.0], -two53);
        check(&[-two53, -1.0, -pow2(-60)], -two53 - 2.0);
        check(&[1.0, pow2(-53)], 1.0);
        check(&[1.0, pow2(-53), pow2(-1000)], 1.0 + pow2(-52));
        // Overflow of the rounded value: f64::MAX's significand is odd, so
        // half an ulp above it ties up to infinity; less stays at MAX.
        check(&[f64::MAX, pow2(970)], f64::INFINITY);
        check(&[f64::MAX, pow2(970), -5e-324], f64::MAX);
        check(&[f64::MAX, pow2(969)], f64::MAX);
        check(&[-f64::MAX, -pow2(970)], f64::NEG_INFINITY);
        check(&[f64::MAX; 1000], f64::INFINITY);
        let mut v = vec![1e308; 1000];
        v.extend(vec![-1e308; 1000]);
        v.push(1.0);
        check(&v, 1.0);
        // Specials.
        check(&[f64::INFINITY, 1.0], f64::INFINITY);
        check(&[f64::NEG_INFINITY, f64::MAX], f64::NEG_INFINITY);
        check(&[f64::INFINITY, f64::INFINITY], f64::INFINITY);
        check(&[f64::INFINITY, f64::NEG_INFINITY], f64::NAN);
        check(&[f64::NAN], f64::NAN);
        check(&[f64::INFINITY, f64::NAN], f64::NAN);
        check(&[f64::from_bits(0xfff0_0000_0000_0001), 1.0], f64::NAN);
        // Zeros: an exact zero is +0.0.
        check(&[], 0.0);
        check(&[-0.0], 0.0);
        check(&[-0.0, -0.0], 0.0);
        check(&[1.5, -1.5], 0.0);
        assert!(ExactSum::new().is_zero());
        assert_eq!(
            [-0.0, 0.0].into_iter().collect::<ExactSum>(),
            ExactSum::new()
        );
        assert!(!ExactSum::from_iter([f64::NAN]).is_zero());
    }

    #[test]
    fn headroom_and_most_negative() {
        // The most negative fixed-point value has no positive counterpart;
        // its magnitude is 2^2175 units, far beyond f64::MAX.
        let mut s = ExactSum::new();
        s.limbs[LIMBS - 1] = 1 << 63;
        assert_eq!(s.value(), f64::NEG_INFINITY);
        let mut s = ExactSum::new();
        s.limbs[LIMBS - 1] = (1 << 63) - 1;
        assert_eq!(s.value(), f64::INFINITY);
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let s: ExactSum = [1.0, -1e300, 5e-324, f64::INFINITY].into_iter().collect();
        let json = serde_json::to_string(&s).unwrap();
        let back: ExactSum = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let bad = r#"{"limbs":[1,2,3],"nans":0,"pos_infs":0,"neg_infs":0}"#;
        let err = serde_json::from_str::<ExactSum>(bad).unwrap_err();
        assert!(err.to_string().contains("expected 34 limbs"), "{err}");
    }

    /// A finite double with a biased exponent in `exps`, any sign and
    /// fraction.
    fn double(exps: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = f64> {
        (any::<bool>(), exps, any::<u64>()).prop_map(|(negative, ef, frac)| {
            f64::from_bits(u64::from(negative) << 63 | ef << 52 | frac & FRAC_MASK)
        })
    }

    /// Vectors of finite doubles with biased exponents up to `max_ef`: spread
    /// over the whole range, small integers, or clustered within up to 80
    /// binary orders of magnitude (many roundings and ties); then some are
    /// appended negated (cancellation) and the whole is shuffled.
    fn vectors(max_ef: u64) -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            vec(double(0..=max_ef), 0..40),
            vec((-1000i32..1000).prop_map(f64::from), 0..40),
            (0..=max_ef - 80, 0..80u64)
                .prop_flat_map(|(base, width)| vec(double(base..=base + width), 0..40)),
        ]
        .prop_flat_map(|v| {
            let n = v.len();
            (Just(v.clone()), proptest::sample::subsequence(v, 0..=n))
        })
        .prop_flat_map(|(mut v, cancel)| {
            v.extend(cancel.iter().map(|x| -x));
            Just(v).prop_shuffle()
        })
    }

    /// Like [`vectors`] with some NaNs, infinities, zeros and extremes.
    fn vectors_with_specials() -> impl Strategy<Value = Vec<f64>> {
        let special = proptest::sample::select(vec![
            f64::NAN,
            f64::from_bits(0xfff8_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MAX,
            -f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ]);
        (vectors(2046), vec(special, 0..3)).prop_flat_map(|(mut v, s)| {
            v.extend(s);
            Just(v).prop_shuffle()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Two doubles: IEEE addition is itself correctly rounded (overflow
        /// included), so it is the reference over the whole finite range.
        #[test]
        fn two_values_match_ieee_addition(x in double(0..=2046), y in double(0..=2046)) {
            let want = x + y;
            let want = if want == 0.0 { 0.0 } else { want };
            prop_assert_eq!(sum(&[x, y]).to_bits(), want.to_bits());
        }

        /// The same with close exponents, where exact ties are frequent.
        #[test]
        fn close_values_match_ieee_addition(
            (x, y) in (0..=2040u64).prop_flat_map(|e| (double(e..=e + 6), double(e..=e + 6))),
        ) {
            let want = x + y;
            let want = if want == 0.0 { 0.0 } else { want };
            prop_assert_eq!(sum(&[x, y]).to_bits(), want.to_bits());
        }

        /// One double round-trips (zeros as +0.0), and x + -x is the empty sum.
        #[test]
        fn single_value_round_trips(x in double(0..=2046)) {
            let want = if x == 0.0 { 0.0 } else { x };
            prop_assert_eq!(sum(&[x]).to_bits(), want.to_bits());
            prop_assert_eq!([x, -x].into_iter().collect::<ExactSum>(), ExactSum::new());
        }

        /// Integers times 2^e: the exact sum in i128, rounded by `as f64`
        /// (correctly rounded), then scaled. Below 2^53 the conversion is
        /// exact and the scaling rounds once; from 2^53 on the conversion
        /// rounds once and the scaling is exact (the result is normal) or
        /// overflows to infinity exactly when the rounded value does.
        #[test]
        fn scaled_integers_match_i128(
            e in prop_oneof![Just(0), -1074i32..=971],
            ns in vec(-(1i64 << 50)..(1i64 << 50), 0..64),
        ) {
            let scale = pow2(e);
            #[allow(clippy::cast_precision_loss)]
            let values: Vec<f64> = ns.iter().map(|&n| n as f64 * scale).collect();
            let total: i128 = ns.iter().map(|&n| i128::from(n)).sum();
            #[allow(clippy::cast_precision_loss)]
            let want = total as f64 * scale;
            prop_assert_eq!(sum(&values).to_bits(), want.to_bits(), "{:?}", values);
        }

        /// General doubles below 1e300 against `math.fsum`'s algorithm.
        #[test]
        fn matches_fsum(values in vectors(2015)) {
            let got = sum(&values);
            let want = fsum(&values);
            if want == 0.0 {
                prop_assert_eq!(got.to_bits(), 0, "{:?}", values);
            } else {
                prop_assert_eq!(got.to_bits(), want.to_bits(), "{:?}", values);
            }
        }

        /// Any order of additions, and any split into merged partial sums,
        /// gives an equal struct, equal serialized bytes and equal value.
        #[test]
        fn order_and_merge_independent(
            (values, shuffled) in vectors_with_specials()
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            split in any::<proptest::sample::Index>(),
            split2 in any::<proptest::sample::Index>(),
        ) {
            let a: ExactSum = values.iter().copied().collect();
            let b: ExactSum = shuffled.iter().copied().collect();
            prop_assert_eq!(&a, &b);
            prop_assert!(same(a.value(), b.value()));

            let (left, right) = shuffled.split_at(split.index(shuffled.len() + 1));
            let (mid, right) = right.split_at(split2.index(right.len() + 1));
            let l: ExactSum = left.iter().copied().collect();
            let m: ExactSum = mid.iter().copied().collect();
            let r: ExactSum = right.iter().copied().collect();
            let mut lr = l.clone();
            lr.merge(&m);
            lr.merge(&r);
            let mut rl = r.clone();
            rl.merge(&m);
            rl.merge(&l);
            let mut nested = m.clone();
            nested.merge(&r);
            let mut outer = l.clone();
            outer.merge(&nested);
            for c in [&lr, &rl, &outer] {
                prop_assert_eq!(c, &a);
                prop_assert_eq!(serde_json::to_string(c).unwrap(), serde_json::to_string(&a).unwrap());
                prop_assert!(same(c.value(), a.value()));
            }
        }
    }
}
