//! What a Vorbis setup header costs before symphonia's decoder builds it: each codebook
//! declares its entries and dimensions, and one with a type-1 lookup unpacks to
//! `entries * dimensions` floats from a few bytes (up to 16 MB each, 256 codebooks: 4 GB
//! from a 5 KB file). The header is walked here, allocating nothing, and refused when its
//! codebooks would take more than [`MAX_CODEBOOK_BYTES`].

use crate::domain::audio::AudioError;

/// The most memory a stream's codebooks may take: real encoders use well under 1 MB.
pub const MAX_CODEBOOK_BYTES: u64 = 32 * 1024 * 1024;

/// The codebook sync pattern ("BCV").
const CODEBOOK_SYNC: u32 = 0x56_4342;
/// What one codebook entry costs besides its VQ vector: its length, value, codeword and a
/// share of the decoding tree.
const ENTRY_BYTES: u64 = 32;

/// Checks the setup header in a Vorbis stream's codec extra data (the identification and
/// setup headers, one after the other or Xiph-laced with the comment header between).
/// What does not parse is left to the decoder, which refuses it before allocating.
///
/// # Errors
/// [`AudioError::Undecodable`] when the codebooks would take more than
/// [`MAX_CODEBOOK_BYTES`].
pub fn check_setup(extra_data: &[u8]) -> Result<(), AudioError> {
    let Some(setup) = setup_header(extra_data) else {
        return Ok(());
    };
    let bytes = codebook_bytes(setup);
    if bytes > MAX_CODEBOOK_BYTES {
        return Err(AudioError::Undecodable(format!(
            "the Vorbis setup header declares codebooks of {bytes} bytes; at most {MAX_CODEBOOK_BYTES} are accepted"
        )));
    }
    Ok(())
}

/// The setup header's packet after its `\x05vorbis` signature.
fn setup_header(extra_data: &[u8]) -> Option<&[u8]> {
    let packet = match extra_data.split_first()? {
        // Xiph lacing of three packets: two lengths, then identification, comment, setup.
        (2, rest) => {
            let mut at = 0;
            let mut skip = 0usize;
            for _ in 0..2 {
                loop {
                    let value = *rest.get(at)?;
                    at += 1;
                    skip = skip.checked_add(usize::from(value))?;
                    if value < 255 {
                        break;
                    }
                }
            }
            rest.get(at.checked_add(skip)?..)?
        }
        // The identification header (30 bytes), then the setup header.
        _ => extra_data.get(30..)?,
    };
    packet.strip_prefix(b"\x05vorbis")
}

/// The bytes the codebooks take once unpacked, as far as the header parses.
fn codebook_bytes(setup: &[u8]) -> u64 {
    let mut bits = LsbBits::new(setup);
    let Some(count) = bits.read(8) else {
        return 0;
    };
    let mut total = 0u64;
    for _ in 0..=count {
        match codebook(&mut bits) {
            Some(bytes) => total = total.saturating_add(bytes),
            None => break,
        }
    }
    total
}

/// Walks one codebook; returns what it takes, or `None` where the header stops parsing.
fn codebook(bits: &mut LsbBits<'_>) -> Option<u64> {
    if bits.read(24)? != CODEBOOK_SYNC {
        return None;
    }
    let dimensions = bits.read(16)?;
    let entries = bits.read(24)?;
    if bits.read(1)? == 1 {
        // Lengths in runs: a count of entries per length, until all are given.
        bits.read(5)?;
        let mut given = 0u32;
        while given < entries {
            given = given.checked_add(bits.read(ilog(entries - given))?)?;
        }
    } else if bits.read(1)? == 1 {
        // Sparse: a flag per entry, a length for each used one.
        for _ in 0..entries {
            if bits.read(1)? == 1 {
                bits.read(5)?;
            }
        }
    } else {
        bits.skip(u64::from(entries) * 5)?;
    }
    let entries = u64::from(entries);
    let dimensions = u64::from(dimensions);
    let lookup_values = match bits.read(4)? {
        0 => return Some(entries * ENTRY_BYTES),
        1 => lookup1_values(entries, dimensions),
        2 => entries * dimensions,
        _ => return None,
    };
    bits.skip(64)?;
    let value_bits = u64::from(bits.read(4)?) + 1;
    bits.read(1)?;
    bits.skip(lookup_values.checked_mul(value_bits)?)?;
    Some(entries * (ENTRY_BYTES + dimensions * 4))
}

/// The largest `v` with `v ^ dimensions <= entries` (Vorbis I, 9.2.3).
fn lookup1_values(entries: u64, dimensions: u64) -> u64 {
    if dimensions == 0 {
        return 0;
    }
    let exponent = u32::try_from(dimensions).unwrap_or(u32::MAX);
    let fits = |v: u64| v.checked_pow(exponent).is_some_and(|power| power <= entries);
    let mut value = (entries as f64).powf(1.0 / dimensions as f64).floor() as u64;
    while value > 0 && !fits(value) {
        value -= 1;
    }
    while fits(value + 1) {
        value += 1;
    }
    value
}

/// The bits needed to write `x` (Vorbis I, 9.2.1).
fn ilog(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// Reads a byte slice least significant bit first, as Vorbis packs its headers.
struct LsbBits<'a> {
    bytes: &'a [u8],
    at: u64,
}

impl<'a> LsbBits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// The next `count` (at most 32) bits as a number, or `None` past the end.
    fn read(&mut self, count: u32) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..count {
            let byte = *self.bytes.get(usize::try_from(self.at / 8).ok()?)?;
            value |= u32::from((byte >> (self.at % 8)) & 1) << i;
            self.at += 1;
        }
        Some(value)
    }

    /// Skips `count` bits, or `None` when fewer are left.
    fn skip(&mut self, count: u64) -> Option<()> {
        let end = self.at.checked_add(count)?;
        (end <= self.bytes.len() as u64 * 8).then(|| self.at = end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes bits least significant first.
    #[derive(Default)]
    struct Writer {
        bytes: Vec<u8>,
        bits: u64,
    }

    impl Writer {
        fn put(&mut self, value: u32, count: u32) -> &mut Self {
            for i in 0..count {
                if self.bits % 8 == 0 {
                    self.bytes.push(0);
                }
                let last = self.bytes.len() - 1;
                self.bytes[last] |= (((value >> i) & 1) as u8) << (self.bits % 8);
                self.bits += 1;
            }
            self
        }
    }

    /// Extra data (identification then setup) declaring `count` codebooks of `entries` x
    /// `dimensions` with a type-1 lookup, all lengths equal.
    fn extra_data(count: u32, entries: u32, dimensions: u32) -> Vec<u8> {
        let mut setup = Writer::default();
        setup.put(count - 1, 8);
        for _ in 0..count {
            setup.put(CODEBOOK_SYNC, 24).put(dimensions, 16).put(entries, 24);
            setup.put(1, 1).put(16, 5).put(entries, ilog(entries));
            setup.put(1, 4).put(0, 32).put(0, 32).put(0, 4).put(0, 1);
            setup.put(
                0,
                u32::try_from(lookup1_values(entries.into(), dimensions.into())).unwrap(),
            );
        }
        let mut data = b"\x01vorbis".to_vec();
        data.resize(30, 0);
        data.extend_from_slice(b"\x05vorbis");
        data.extend_from_slice(&setup.bytes);
        data
    }

    #[test]
    fn lookup1_values_is_the_largest_root_that_fits() {
        assert_eq!(lookup1_values(131_072, 32), 1);
        assert_eq!(lookup1_values(131_072, 16), 2);
        assert_eq!(lookup1_values(81, 4), 3);
        assert_eq!(lookup1_values(80, 4), 2);
        assert_eq!(lookup1_values(1_000, 1), 1_000);
    }

    #[test]
    fn a_setup_of_a_few_small_codebooks_passes() {
        check_setup(&extra_data(30, 256, 4)).unwrap();
    }

    #[test]
    fn a_setup_declaring_gigabytes_of_codebooks_is_undecodable() {
        let bomb = extra_data(256, 131_072, 20);
        assert!(bomb.len() < 8_192, "{} bytes", bomb.len());
        let error = check_setup(&bomb).unwrap_err();
        assert!(
            matches!(&error, AudioError::Undecodable(m) if m.contains("codebooks")),
            "{error:?}"
        );
    }

    #[test]
    fn a_laced_setup_is_found_after_the_comment_header() {
        let plain = extra_data(256, 131_072, 20);
        let (ident, setup) = plain.split_at(30);
        let comment = b"\x03vorbis\0\0\0\0\0\0\0\0\x01";
        let mut laced = vec![2, 30, comment.len() as u8];
        laced.extend_from_slice(ident);
        laced.extend_from_slice(comment);
        laced.extend_from_slice(setup);
        assert!(check_setup(&laced).is_err());
    }

    #[test]
    fn what_does_not_parse_is_left_to_the_decoder() {
        check_setup(b"").unwrap();
        check_setup(b"\x01vorbis").unwrap();
        let mut truncated = extra_data(256, 131_072, 20);
        truncated.truncate(60);
        check_setup(&truncated).unwrap();
    }
}
