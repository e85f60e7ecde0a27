//! QPACK (RFC 9204) without a dynamic table: this server advertises a table capacity of
//! 0, so a field section may only use the static table and literals. Decoding reads
//! every representation, decodes Huffman-coded strings, and refuses a reference to the
//! dynamic table (`QPACK_DECOMPRESSION_FAILED`); encoding writes the few response
//! fields the server sends.

use super::H3Error;

/// The static table (RFC 9204 Appendix A).
const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    ("strict-transport-security", "max-age=31536000; includesubdomains"),
    ("strict-transport-security", "max-age=31536000; includesubdomains; preload"),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    ("content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

/// Index of `:status` with no value, for literal statuses.
const STATUS_NAME: usize = 24;
/// Most fields a request may carry.
const MAX_FIELDS: usize = 128;

/// One decoded field line. Names are kept as sent (HTTP/3 requires lowercase; the
/// request check refuses uppercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

fn failed(reason: impl std::fmt::Display) -> H3Error {
    H3Error::decompression(reason)
}

/// Reads an integer with an `prefix_bits`-bit prefix (RFC 7541 §5.1) starting at
/// `bytes[0]`; returns the value and the bytes used.
fn read_prefixed(bytes: &[u8], prefix_bits: u32) -> Result<(u64, usize), H3Error> {
    let first = *bytes.first().ok_or_else(|| failed("a field line ends inside an integer"))?;
    let max = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok((value, 1));
    }
    let mut shift = 0u32;
    for (i, byte) in bytes.iter().enumerate().skip(1) {
        if shift > 56 {
            return Err(failed("an integer longer than 62 bits"));
        }
        value += u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(failed("a field line ends inside an integer"))
}

/// Appends an integer with an `prefix_bits`-bit prefix, OR-ing `flags` into the first byte.
fn write_prefixed(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, mut value: u64) {
    let max = (1u64 << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a string literal whose Huffman flag is bit `prefix_bits` of the first byte and
/// whose length has a `prefix_bits`-bit prefix; at most `max_len` bytes.
fn read_string(bytes: &[u8], prefix_bits: u32, max_len: usize) -> Result<(String, usize), H3Error> {
    let first = *bytes.first().ok_or_else(|| failed("a field line ends before a string"))?;
    let huffman = first & (1 << prefix_bits) != 0;
    let (len, used) = read_prefixed(bytes, prefix_bits)?;
    if len > max_len as u64 {
        return Err(H3Error::excessive_load(format!("a header string of {len} bytes")));
    }
    let end = used + len as usize;
    let raw = bytes.get(used..end).ok_or_else(|| failed("a field line ends inside a string"))?;
    let decoded = if huffman {
        let mut out = Vec::with_capacity(raw.len() * 8 / 5);
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits)
            .map_err(|e| failed(format!("a Huffman-coded string does not decode: {e:?}")))?;
        out
    } else {
        raw.to_vec()
    };
    let text = String::from_utf8(decoded).map_err(|_| failed("a header string that is not UTF-8"))?;
    Ok((text, end))
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), H3Error> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i))
        .copied()
        .ok_or_else(|| failed(format!("static table index {index} does not exist")))
}

/// Decodes a HEADERS frame's field section. `max_bytes` bounds the decoded section
/// (names plus values plus 32 per field, as RFC 9114 §4.2.2 counts it).
pub fn decode_field_section(block: &[u8], max_bytes: usize) -> Result<Vec<Field>, H3Error> {
    let (required_insert_count, used) = read_prefixed(block, 8)?;
    if required_insert_count != 0 {
        return Err(failed("the field section needs the dynamic table, whose capacity is 0"));
    }
    let rest = block.get(used..).unwrap_or_default();
    // Delta Base (with its sign bit): meaningless without a dynamic table.
    let (_, used_base) = read_prefixed(rest, 7)?;
    let mut rest = &rest[used_base..];
    let mut fields = Vec::new();
    let mut size = 0usize;
    while let Some(&first) = rest.first() {
        if fields.len() >= MAX_FIELDS {
            return Err(H3Error::excessive_load(format!("more than {MAX_FIELDS} header fields")));
        }
        let (name, value, used): (String, String, usize) = if first & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if first & 0x40 == 0 {
                return Err(failed("an indexed field line refers to the dynamic table"));
            }
            let (index, used) = read_prefixed(rest, 6)?;
            let (name, value) = static_entry(index)?;
            (name.to_owned(), value.to_owned(), used)
        } else if first & 0x40 != 0 {
            // Literal with name reference: 01 N T index(4), then the value.
            if first & 0x10 == 0 {
                return Err(failed("a literal field line names a dynamic table entry"));
            }
            let (index, used) = read_prefixed(rest, 4)?;
            let (name, _) = static_entry(index)?;
            let (value, used_value) = read_string(&rest[used..], 7, max_bytes)?;
            (name.to_owned(), value, used + used_value)
        } else if first & 0x20 != 0 {
            // Literal with literal name: 001 N H namelen(3), name, then the value.
            let (name, used) = read_string(rest, 3, max_bytes)?;
            let (value, used_value) = read_string(&rest[used..], 7, max_bytes)?;
            (name, value, used + used_value)
        } else {
            // 0001 (indexed, post-base) and 0000 (literal, post-base name): dynamic.
            return Err(failed("a field line refers to the dynamic table (post-base index)"));
        };
        size += name.len() + value.len() + 32;
        if size > max_bytes {
            return Err(H3Error::excessive_load(format!("the header section is over {max_bytes} bytes")));
        }
        fields.push(Field { name, value });
        rest = &rest[used..];
    }
    Ok(fields)
}

/// Encodes a response's field section: `:status` (from the static table when it is
/// there), then `fields` as literals with literal names (no Huffman coding).
pub fn encode_response(status: u16, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0x00, 0x00];
    let status_text = status.to_string();
    match STATIC_TABLE.iter().position(|(n, v)| *n == ":status" && *v == status_text) {
        Some(index) => write_prefixed(&mut out, 0xc0, 6, index as u64),
        None => {
            write_prefixed(&mut out, 0x50, 4, STATUS_NAME as u64);
            write_prefixed(&mut out, 0x00, 7, status_text.len() as u64);
            out.extend_from_slice(status_text.as_bytes());
        }
    }
    for (name, value) in fields {
        write_prefixed(&mut out, 0x20, 3, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        write_prefixed(&mut out, 0x00, 7, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::webtransport::H3Code;

    fn pairs(fields: &[Field]) -> Vec<(&str, &str)> {
        fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect()
    }

    #[test]
    fn the_static_table_has_rfc_9204_s_entries_where_the_rfc_puts_them() {
        assert_eq!(STATIC_TABLE[0], (":authority", ""));
        assert_eq!(STATIC_TABLE[15], (":method", "CONNECT"));
        assert_eq!(STATIC_TABLE[23], (":scheme", "https"));
        assert_eq!(STATIC_TABLE[25], (":status", "200"));
        assert_eq!(STATIC_TABLE[63], (":status", "100"));
        assert_eq!(STATIC_TABLE[90], ("origin", ""));
        assert_eq!(STATIC_TABLE[95], ("user-agent", ""));
        assert_eq!(STATIC_TABLE[98], ("x-frame-options", "sameorigin"));
    }

    #[test]
    fn prefixed_integers_follow_rfc_7541_s_examples() {
        // C.1.1: 10 in a 5-bit prefix; C.1.2: 1337 in a 5-bit prefix.
        let mut out = Vec::new();
        write_prefixed(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        write_prefixed(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        assert_eq!(read_prefixed(&out, 5).unwrap(), (1337, 3));
        assert!(read_prefixed(&[0x1f, 0x9a], 5).is_err());
        assert!(read_prefixed(&[0xff; 12], 8).is_err());
    }

    #[test]
    fn responses_decode_back() {
        let ok = encode_response(200, &[("sec-webtransport-http3-draft", "draft02")]);
        assert_eq!(&ok[..3], [0x00, 0x00, 0xd9]);
        let fields = decode_field_section(&ok, 4096).unwrap();
        assert_eq!(pairs(&fields), [(":status", "200"), ("sec-webtransport-http3-draft", "draft02")]);
        let refused = encode_response(429, &[("content-type", "application/json")]);
        assert_eq!(pairs(&decode_field_section(&refused, 4096).unwrap())[0], (":status", "429"));
        let not_found = encode_response(404, &[]);
        assert_eq!(pairs(&decode_field_section(&not_found, 4096).unwrap()), [(":status", "404")]);
    }

    #[test]
    fn huffman_coded_literals_decode() {
        // RFC 7541 C.4.1: "www.example.com" Huffman-coded, as a literal with a static
        // name reference to :authority (index 0).
        let mut block = vec![0x00, 0x00, 0x50, 0x8c];
        block.extend_from_slice(&[0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]);
        let fields = decode_field_section(&block, 4096).unwrap();
        assert_eq!(pairs(&fields), [(":authority", "www.example.com")]);
        // A literal name, Huffman-coded too ("custom-key" / "custom-value", C.4.3).
        let mut block = vec![0x00, 0x00, 0x28 | 0x08 | 0x07, 0x01];
        block.extend_from_slice(&[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f]);
        block.extend_from_slice(&[0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf]);
        let fields = decode_field_section(&block, 4096).unwrap();
        assert_eq!(pairs(&fields), [("custom-key", "custom-value")]);
    }

    #[test]
    fn the_dynamic_table_and_broken_sections_are_refused_without_panicking() {
        let code = |block: &[u8]| decode_field_section(block, 4096).unwrap_err().code;
        assert_eq!(code(&[0x01, 0x00]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x80]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x10]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x00]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x40, 0x01]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0xff, 0x7f]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x51, 0x85, 0xff]), H3Code::QpackDecompressionFailed);
        assert_eq!(code(&[0x00, 0x00, 0x21, b'a', 0x7f, 0xff, 0x7f]), H3Code::ExcessiveLoad);
        assert_eq!(code(&[]), H3Code::QpackDecompressionFailed);
        // Every truncation of a valid section fails cleanly.
        let ok = encode_response(200, &[("x", "y")]);
        for cut in 1..ok.len() - 1 {
            let _ = decode_field_section(&ok[..cut], 4096);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode_field_section(&bytes, 4096);
        }
    }
}
