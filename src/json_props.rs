//! Test support: arbitrary JSON for the property tests of the parsers that read JSON.

use proptest::prelude::*;
use serde_json::Value;

/// How [`any_json`] shapes its values.
pub(crate) struct JsonShape {
    /// Object keys: drawn from these (so a parser's own field names come up often), or any
    /// string when empty.
    pub keys: &'static [&'static str],
    /// Leaves besides null, booleans, numbers and strings: values the parser looks for.
    pub leaves: Vec<Value>,
    /// At most this many levels of nesting.
    pub depth: u32,
    /// About this many nodes in all.
    pub size: u32,
}

/// Any JSON value: nulls, booleans, integers, floats, strings and the shape's leaves, nested
/// in arrays (up to 3 items) and objects (up to 4 fields).
pub(crate) fn any_json(shape: JsonShape) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let leaf = if shape.leaves.is_empty() {
        leaf.boxed()
    } else {
        prop_oneof![leaf, proptest::sample::select(shape.leaves)].boxed()
    };
    let keys = shape.keys;
    leaf.prop_recursive(shape.depth, shape.size, 6, move |inner| {
        let key = if keys.is_empty() {
            any::<String>().boxed()
        } else {
            proptest::sample::select(keys).prop_map(str::to_owned).boxed()
        };
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
