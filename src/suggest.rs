//! "Did you mean ...?": the nearest known name by edit distance.

/// Levenshtein distance in characters.
pub fn distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// The nearest candidate within a distance that still looks like a typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            nearest("creat_slot", ["create_slot", "drop_slot"]),
            Some("create_slot")
        );
        assert_eq!(
            nearest("failovr", ["failover", "failback"]),
            Some("failover")
        );
        assert_eq!(nearest("zzzzzz", ["setup"]), None);
    }
}
