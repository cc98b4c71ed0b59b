//! What a test's value means: OPA's pass/fail/error rules (`runTest`,
//! `subResults`, `subResult` and `SubResultMap.Update` in
//! `v1/tester/runner.go`).
//!
//! - an evaluation error is an ERROR (not a FAIL);
//! - undefined is a FAIL;
//! - a partial object (`test_x[case] if …`) passes unless one of its cases
//!   fails: an entry whose value is not `true` (or a nested object with a
//!   failing entry), or a case the body reached but did not produce;
//! - anything else passes only when it is `true` (a `contains` rule, a
//!   number, `false`: FAIL).

use std::collections::BTreeMap;

use serde::Serialize;

/// One case of a partial-object test (`SubResult`); nested for
/// `test_x[a][b]`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SubResult {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sub_results: BTreeMap<String, SubResult>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail: bool,
}

/// OPA's `termToString`: a string as itself, anything else as compact JSON.
pub fn term_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `subResults`: the cases of a partial object's value. Returns whether any
/// failed.
pub fn sub_results(v: &serde_json::Value) -> (bool, BTreeMap<String, SubResult>) {
    let mut out = BTreeMap::new();
    let mut fail = false;
    match v {
        serde_json::Value::Null => return (true, out),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let sr = sub_result(k, v);
                fail |= sr.fail;
                out.insert(k.clone(), sr);
            }
        }
        _ => {}
    }
    (fail, out)
}

fn sub_result(name: &str, v: &serde_json::Value) -> SubResult {
    match v {
        serde_json::Value::Null => SubResult::default(),
        serde_json::Value::Object(_) => {
            let (fail, sub_results) = sub_results(v);
            SubResult {
                sub_results,
                name: name.to_string(),
                fail,
            }
        }
        serde_json::Value::Bool(b) => SubResult {
            name: name.to_string(),
            fail: !b,
            ..Default::default()
        },
        _ => SubResult {
            name: name.to_string(),
            fail: true,
            ..Default::default()
        },
    }
}

/// `SubResultMap.Update`: a case the body reached. A case missing from the
/// value is added as failed; returns whether the case (or one above it)
/// failed.
pub fn reach(map: &mut BTreeMap<String, SubResult>, path: &[String]) -> bool {
    let Some((k, rest)) = path.split_first() else {
        return true;
    };
    let entry = map.entry(k.clone()).or_insert_with(|| SubResult {
        name: k.clone(),
        fail: true,
        sub_results: BTreeMap::new(),
    });
    if rest.is_empty() {
        return entry.fail;
    }
    let fail = reach(&mut entry.sub_results, rest);
    if fail {
        entry.fail = true;
    }
    fail
}

/// Depth-first, sorted (`SubResultMap.Iter`): (depth, sub-result).
pub fn walk<'a>(
    map: &'a BTreeMap<String, SubResult>,
    depth: usize,
    out: &mut Vec<(usize, &'a SubResult)>,
) {
    for sr in map.values() {
        out.push((depth, sr));
        walk(&sr.sub_results, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_object_cases_as_opa_counts_them() {
        // test_cases_partial_fail of OPA's runner_test.go: foo and baz in
        // the value, bar reached but not produced.
        let (fail, mut m) = sub_results(&json!({"foo": true, "baz": true}));
        assert!(!fail);
        for case in ["foo", "bar", "baz"] {
            reach(&mut m, &[case.to_string()]);
        }
        let fails: Vec<(&str, bool)> = m.iter().map(|(k, v)| (k.as_str(), v.fail)).collect();
        assert_eq!(fails, [("bar", true), ("baz", false), ("foo", false)]);
        // Nested: a failing leaf fails its parent.
        let (_, mut m) = sub_results(&json!({"bar": {"do": true}}));
        assert!(reach(&mut m, &["foo".into(), "re".into()]));
        assert!(m["foo"].fail && m["foo"].sub_results["re"].fail && !m["bar"].fail);
        assert!(sub_results(&json!({"a": 1})).0, "a non-boolean case fails");
        assert_eq!(term_to_string(&json!(["a", 1])), "[\"a\",1]");
    }
}
