//! Small text helpers shared by the console's handlers and the use cases behind them.

/// A form or query value with surrounding whitespace removed, or `None` when nothing is
/// left: an empty filter field means "no filter", never "match the empty string".
pub fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}
