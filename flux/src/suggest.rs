//! "Did you mean …?": the closest of a few known words to a misspelled one.

/// The candidate closest to `word` (by Damerau–Levenshtein distance,
/// ignoring case), when it is close enough to be a misspelling of it: at
/// most a third of its letters differ (and at least one may).
#[must_use]
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let allowed = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_find_their_word_and_strangers_find_none() {
        let fields = ["eventSeverity", "eventSources", "providerRef", "summary"];
        assert_eq!(closest("eventSeverty", fields), Some("eventSeverity"));
        assert_eq!(closest("providerref", fields), Some("providerRef"));
        assert_eq!(closest("sumary", fields), Some("summary"));
        assert_eq!(closest("color", fields), None);
        assert_eq!(closest("slak", ["slack", "discord"]), Some("slack"));
    }
}
