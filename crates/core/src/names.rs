//! Rules for the names users give to apps and functions.

/// Longest app or function name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an app or function name: 1–63 characters, lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter. Such names are safe in URLs,
/// file names and SQL without escaping.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is invalid: use 1-{MAX_NAME_LEN} characters among a-z, 0-9, '-' and '_', starting with a letter"
        ))
    }
}

/// Checks a component content hash: 64 lowercase hex digits (SHA-256).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("app", "demo").is_ok());
        assert!(check_name("app", "my-app_2").is_ok());
        assert!(check_name("app", "").is_err());
        assert!(check_name("app", "2fast").is_err());
        assert!(check_name("app", "Demo").is_err());
        assert!(check_name("app", "a/b").is_err());
        assert!(check_name("app", &"a".repeat(64)).is_err());
        let err = check_name("function", "../x").unwrap_err();
        assert!(err.contains("function name \"../x\" is invalid"), "{err}");
    }

    #[test]
    fn hashes() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex("abc"));
    }
}
