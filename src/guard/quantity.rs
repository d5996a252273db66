//! Kubernetes quantities, parsed exactly as apimachinery parses them
//! (`resource.ParseQuantity`), so the guard compares requests, limits and
//! page sizes as the API server does.

/// A quantity as apimachinery holds it once parsed: rounded away from zero
/// to whole nano-units (`resource.ParseQuantity` rounds to `Nano` with
/// `inf.RoundUp`), kept exactly in an `i128`, so that requests, limits and
/// page sizes compare as the API server compares them ("1Gi" equals
/// "1024Mi", "-1Gi" is negative). Beyond ±1.7e29 units, where no resource
/// lives, `nanos` is `None` and comparisons fall back to `approx`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParsedQuantity {
    pub nanos: Option<i128>,
    /// The value as a float, for the out-of-range fallback.
    pub approx: f64,
    pub format: QuantityFormat,
}

/// How apimachinery prints a quantity back: from the suffix it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantityFormat {
    /// `Ki`, `Mi`, ...
    BinarySI,
    /// No suffix, or `n`, `u`, `m`, `k`, `M`, ...
    DecimalSI,
    /// `e3`, `E-2`, ...
    DecimalExponent,
}

pub(super) const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl ParsedQuantity {
    pub fn is_negative(&self) -> bool {
        self.nanos.map_or(self.approx < 0.0, |n| n < 0)
    }

    pub fn is_positive(&self) -> bool {
        self.nanos.map_or(self.approx > 0.0, |n| n > 0)
    }

    pub fn compare(&self, other: &Self) -> std::cmp::Ordering {
        match (self.nanos, other.nanos) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.approx.total_cmp(&other.approx),
        }
    }

    /// `Quantity.Value()`: whole units, rounded up.
    pub(super) fn units(&self) -> Option<i128> {
        self.nanos.map(|n| ceil_div(n, NANOS_PER_UNIT))
    }

    /// `Quantity.MilliValue()`: thousandths, rounded up.
    pub(super) fn millis(&self) -> Option<i128> {
        self.nanos.map(|n| ceil_div(n, NANOS_PER_UNIT / 1000))
    }

    /// `MilliValue() % 1000 == 0`: what the API server calls an integer.
    pub fn is_whole(&self) -> bool {
        self.millis()
            .map_or(self.approx.fract() == 0.0, |m| m % 1000 == 0)
    }
}

/// Division rounding away from zero (for a positive divisor).
fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIX: &str = "unable to parse quantity's suffix";

/// A suffix as powers: `(binary, decimal)`, the value being
/// `number × 1024^binary × 10^decimal`.
fn suffix_powers(suffix: &str) -> Result<(u32, i32), String> {
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if let Some(i) = binary.iter().position(|b| *b == suffix) {
        return Ok((i as u32 + 1, 0));
    }
    let decimal = match suffix {
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        exponent if exponent.len() > 1 && exponent.starts_with(['e', 'E']) => exponent[1..]
            .parse::<i32>()
            .map_err(|_| QUANTITY_SUFFIX.to_owned())?,
        _ => return Err(QUANTITY_SUFFIX.to_owned()),
    };
    Ok((0, decimal))
}

/// The magnitude in nano-units, rounded up; `None` beyond `i128`.
fn exact_nanos(digits: &str, fraction_len: usize, binary: u32, decimal: i32) -> Option<i128> {
    let digits = digits.trim_start_matches('0');
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scaled = mantissa.checked_mul(1024u128.checked_pow(binary)?)?;
    let exponent = i64::from(decimal) - fraction_len as i64 + 9;
    let magnitude = if exponent >= 0 {
        scaled.checked_mul(10u128.checked_pow(u32::try_from(exponent).ok()?)?)?
    } else {
        match u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(divisor) => scaled.div_ceil(divisor),
            // Smaller than a nano-unit: rounded up to one, as apimachinery does.
            None => u128::from(scaled > 0),
        }
    };
    i128::try_from(magnitude).ok()
}

/// `resource.ParseQuantity` after the JSON decoder's `strings.TrimSpace`:
/// the API server fails the whole pod with exactly these messages.
pub fn quantity(text: &str) -> Result<ParsedQuantity, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(QUANTITY_FORMAT.to_owned());
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = bytes[0] == b'-';
    if matches!(bytes[0], b'-' | b'+') {
        pos += 1;
    }
    let digits = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_end = digits(pos);
    let mut number_end = int_end;
    if bytes.get(number_end) == Some(&b'.') {
        number_end = digits(number_end + 1);
    }
    // The suffix: letters of the set, then an optional signed integer.
    let mut i = number_end;
    while i < bytes.len() && b"eEinumkKMGTP".contains(&bytes[i]) {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
        i += 1;
    }
    if !bytes[i..].iter().all(u8::is_ascii_digit) {
        return Err(QUANTITY_FORMAT.to_owned());
    }
    let (binary, decimal) = suffix_powers(&s[number_end..])?;
    // apimachinery reads "", "." and "5." as numbers (zero, five).
    let whole = &s[pos..int_end];
    let fraction = s[int_end..number_end].trim_start_matches('.');
    let number = format!("{whole}{fraction}");
    let mut approx = format!("0{whole}.{fraction}0")
        .parse::<f64>()
        .unwrap_or(0.0)
        * 1024f64.powi(binary as i32)
        * 10f64.powi(decimal);
    let mut nanos = exact_nanos(&number, fraction.len(), binary, decimal);
    if negative {
        approx = -approx;
        nanos = nanos.map(|n| -n);
    }
    let format = match (binary, &s[number_end..]) {
        (1.., _) => QuantityFormat::BinarySI,
        (_, suffix) if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            QuantityFormat::DecimalExponent
        }
        _ => QuantityFormat::DecimalSI,
    };
    Ok(ParsedQuantity {
        nanos,
        approx,
        format,
    })
}
