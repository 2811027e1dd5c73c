//! A run's result read in pages: `wasmflow result --offset/--max-bytes`
//! and the MCP server's `workflow_result` cut the same bytes the same way.

use serde::Serialize;

/// One page of a result's compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<'a> {
    /// Bytes of the whole result.
    pub total_bytes: u64,
    /// Where this page starts.
    pub offset: u64,
    /// Where the next page starts; `None` on the last.
    pub next_offset: Option<u64>,
    /// The page's bytes (whole UTF-8 characters).
    #[serde(skip)]
    pub bytes: &'a [u8],
}

/// The largest prefix of `bytes[..max]` that ends on a UTF-8 boundary.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let mut end = max.min(bytes.len());
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    end
}

/// The page of `bytes` starting at `offset`, at most `max_bytes` long (all
/// the rest when `None`); an error says what to pass instead.
pub fn page(bytes: &[u8], offset: u64, max_bytes: Option<u64>) -> Result<Page<'_>, String> {
    let total = bytes.len() as u64;
    if offset > total {
        return Err(format!(
            "offset {offset} is past the end of the result ({total} bytes)"
        ));
    }
    let start = offset as usize;
    if start < bytes.len() && (bytes[start] & 0xC0) == 0x80 {
        return Err(format!(
            "offset {start} is inside a UTF-8 character: use a next_offset a page gave"
        ));
    }
    let rest = &bytes[start..];
    let len = match max_bytes {
        Some(max) => utf8_cut(rest, usize::try_from(max).unwrap_or(usize::MAX)),
        None => rest.len(),
    };
    if len == 0 && !rest.is_empty() {
        return Err("the page size is smaller than the next UTF-8 character".into());
    }
    let next = (start + len) as u64;
    Ok(Page {
        total_bytes: total,
        offset,
        next_offset: (next < total).then_some(next),
        bytes: &rest[..len],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_join_to_the_whole_and_never_split_a_character() {
        let text = "aé€😀b".repeat(50);
        let bytes = text.as_bytes();
        for max in 1..9u64 {
            let mut joined = Vec::new();
            let mut offset = 0;
            loop {
                let p = match page(bytes, offset, Some(max)) {
                    Ok(p) => p,
                    // A page smaller than a 4-byte character cannot move on.
                    Err(e) => {
                        assert!(max < 4 && e.contains("smaller"), "{e}");
                        break;
                    }
                };
                assert!(std::str::from_utf8(p.bytes).is_ok());
                joined.extend_from_slice(p.bytes);
                match p.next_offset {
                    Some(n) => offset = n,
                    None => break,
                }
            }
            if max >= 4 {
                assert_eq!(joined, bytes);
            }
        }
        assert!(page(bytes, 2, None).unwrap_err().contains("inside a UTF-8"));
        assert!(
            page(bytes, 100_000, None)
                .unwrap_err()
                .contains("past the end")
        );
        assert_eq!(page(b"", 0, Some(3)).unwrap().next_offset, None);
    }
}
