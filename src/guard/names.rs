//! The API server's name rules: DNS labels and subdomains, qualified names,
//! label keys and values, env var names, config keys, the pull policy.

/// A rule of the API server's: `Ok` where it holds, else its refusal.
pub(super) fn rule(holds: bool, refusal: &str) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(refusal.to_owned())
    }
}

/// A `configMapKeyRef`/`secretKeyRef`: a DNS subdomain name and a key of
/// `[-._a-zA-Z0-9]+` (`validateConfigMapKeySelector`, `IsConfigMapKey`).
pub(super) fn key_ref(name: &str, key: &str) -> Result<(), String> {
    dns_subdomain(name).map_err(|e| format!("name {name:?} {e}"))?;
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && !key.starts_with("..");
    rule(
        ok,
        "a key must be at most 253 letters, digits, '-', '_' or '.', and not '.' or start with '..'",
    )
}

/// `imagePullPolicy`, as the API server's enum.
pub fn pull_policy(value: &str) -> Result<(), String> {
    match value {
        "Always" | "IfNotPresent" | "Never" => Ok(()),
        _ => Err("must be Always, IfNotPresent or Never".to_owned()),
    }
}

/// An env var name: `[-._a-zA-Z][-._a-zA-Z0-9]*` (the API server's
/// C_IDENTIFIER-like rule, before the relaxed validation of newer releases:
/// what every supported API server accepts).
pub fn env_var_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'));
    rule(
        first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-' or '.', and must not start with a digit",
    )
}

/// An RFC 1123 label: names of containers and volumes.
pub fn dns_label(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    rule(
        ok,
        "must be a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters, starting and ending with a letter or digit)",
    )
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns_subdomain(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        // Unlike a label on its own, a part of a subdomain may be longer than 63.
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    rule(
        ok,
        "must be a DNS-1123 subdomain (lowercase labels separated by '.', at most 253 characters)",
    )
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63: the name part of
/// a qualified name, and a non-empty label value.
fn name_part(s: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    !s.is_empty()
        && s.len() <= 63
        && edge(s.bytes().next())
        && edge(s.bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name (`[prefix/]name`): label keys, extended resources.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|e| format!("the prefix {prefix:?} {e}"))?;
    }
    rule(
        name_part(name),
        "must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    )
}

pub fn label_key(key: &str) -> Result<(), String> {
    qualified_name(key)
}

pub fn label_value(value: &str) -> Result<(), String> {
    rule(
        value.is_empty() || name_part(value),
        "a label value must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    )
}
