//! Hexadecimal as plusgate writes hashes, keys and signatures: lower case out, either case
//! in. Shared by the audit chain, keys, receipts, the directory and the vault, so none of
//! them imports another just for this.

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Decodes hex (upper or lower case, even length); `None` for anything else.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Decodes exactly `N` bytes (`2 × N` hex digits, upper or lower case); `None` for anything
/// else.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    decode(s)?.try_into().ok()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lower_case() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0xff, 0x7a, 0x09]), "00ff7a09");
    }

    #[test]
    fn decodes_either_case_and_refuses_anything_else() {
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("00ff7A"), Some(vec![0x00, 0xff, 0x7a]));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("+1"), None);
        assert_eq!(decode("é1"), None);
    }

    #[test]
    fn decodes_arrays_of_exactly_their_length() {
        assert_eq!(decode_array::<2>("00fF"), Some([0x00, 0xff]));
        assert_eq!(decode_array::<2>("00ff00"), None);
        assert_eq!(decode_array::<2>("00f"), None);
        let hash = encode(&[7; 32]);
        assert_eq!(decode_array::<32>(&hash), Some([7; 32]));
        assert_eq!(decode_array::<32>(&hash[2..]), None);
    }
}
