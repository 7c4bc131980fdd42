//! SQL functions for the lake (registered on every [`crate::sql::new_context`]):
//!
//! | function | returns |
//! |---|---|
//! | `is_private_ip(source_ip)` | true for RFC 1918, loopback, link-local, CGNAT and IPv6 ULA/link-local addresses; false for public IPs, service names and "AWS Internal" |
//! | `arn_account(arn)` | the account id in any ARN, else null |
//! | `ip_network(source_ip)` | the /24 (IPv4) or /48 (IPv6) network of an address, else null |
//! | `policy_findings(key_policy)` | a list of `{kind, sid, value}` structs (see [`crate::sql::policy`]); `unparseable` for invalid JSON |
//! | `json_get(json, 'a.b')` | the member at a dotted path of a JSON text (`request_parameters`), as text (objects and arrays as JSON); null when absent |
//! | `kms_time(text)` | a timestamp from RFC 3339 or the free-form dates inside requests (`Jan 1, 2021 8:00:00 PM`); null otherwise |
//! | `tag_keys(request_parameters)` | the tag keys a TagResource (`tags[].tagKey`) or UntagResource (`tagKeys`) names |
//! | `resource_tag_keys(key_policy)` | the tag keys a policy's conditions read (`aws:ResourceTag/<key>`): its ABAC tags |

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringArray, StringBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::sql::policy;

fn finding_fields() -> Fields {
    Fields::from(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("sid", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, false),
    ])
}

/// The return type of `policy_findings`.
pub(crate) fn findings_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(finding_fields()),
        true,
    )))
}

fn utf8_arg(args: &[ColumnarValue], name: &str) -> Result<(ArrayRef, bool)> {
    let scalar = matches!(args.first(), Some(ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let arr = arrays
        .into_iter()
        .next()
        .ok_or_else(|| DataFusionError::Plan(format!("{name} takes one argument")))?;
    let arr = arrow::compute::cast(&arr, &DataType::Utf8)?;
    Ok((arr, scalar))
}

fn output(arr: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::try_from_array(&arr, 0)?,
        ))
    } else {
        Ok(ColumnarValue::Array(arr))
    }
}

fn is_private_ip_udf() -> ScalarUDF {
    create_udf(
        "is_private_ip",
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let (arr, scalar) = utf8_arg(args, "is_private_ip")?;
            let s = arr.as_string::<i32>();
            let out: BooleanArray = s.iter().map(|v| v.map(policy::is_private_ip)).collect();
            output(Arc::new(out), scalar)
        }),
    )
}

/// A `Utf8 -> Utf8` function applying `f` to each non-null value.
fn string_udf(name: &'static str, f: fn(&str) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let (arr, scalar) = utf8_arg(args, name)?;
            let s = arr.as_string::<i32>();
            let out: StringArray = s.iter().map(|v| v.and_then(f)).collect();
            output(Arc::new(out), scalar)
        }),
    )
}

fn policy_findings_udf() -> ScalarUDF {
    create_udf(
        "policy_findings",
        vec![DataType::Utf8],
        findings_type(),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let (arr, scalar) = utf8_arg(args, "policy_findings")?;
            let s = arr.as_string::<i32>();
            let fields = finding_fields();
            let item = StructBuilder::new(
                fields.clone(),
                vec![
                    Box::new(StringBuilder::new()),
                    Box::new(StringBuilder::new()),
                    Box::new(StringBuilder::new()),
                ],
            );
            let mut list = ListBuilder::new(item).with_field(Arc::new(Field::new(
                "item",
                DataType::Struct(fields),
                true,
            )));
            for v in s.iter() {
                let findings = v.map(policy::analyze_or_finding);
                let Some(findings) = findings else {
                    list.append(false);
                    continue;
                };
                let st = list.values();
                for f in findings {
                    string_field(st, 0)?.append_value(f.kind.as_str());
                    string_field(st, 1)?.append_option(f.sid.as_deref());
                    string_field(st, 2)?.append_value(&f.value);
                    st.append(true);
                }
                list.append(true);
            }
            let out = list.finish();
            debug_assert_eq!(out.len(), s.len());
            output(Arc::new(out), scalar)
        }),
    )
}

fn string_field(st: &mut StructBuilder, i: usize) -> Result<&mut StringBuilder> {
    st.field_builder::<StringBuilder>(i)
        .ok_or_else(|| DataFusionError::Internal(format!("finding field {i} is not a string")))
}

/// The member at a dotted path of a JSON text.
pub fn json_get(json: &str, path: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        v = v.get_mut(part)?.take();
    }
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// RFC 3339, or the dates KMS writes inside requests and responses.
pub fn kms_time(text: &str) -> Option<i64> {
    let t = text.trim();
    crate::time::parse_event_time(t).or_else(|| {
        [
            "%b %d, %Y %I:%M:%S %p",
            "%b %d, %Y, %I:%M:%S %p",
            "%b %d, %Y %H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
        .map(|d| d.and_utc().timestamp_micros())
    })
}

/// Tag keys named by TagResource (`tags[].tagKey`) or UntagResource (`tagKeys`).
pub fn tag_keys(request_parameters: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(request_parameters) else {
        return Vec::new();
    };
    let mut out: Vec<String> = v
        .get("tags")
        .and_then(|t| t.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("tagKey").or_else(|| t.get("TagKey"))?.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(keys) = v.get("tagKeys").and_then(|t| t.as_array()) {
        out.extend(keys.iter().filter_map(|k| k.as_str()).map(str::to_owned));
    }
    out
}

/// Tag keys a policy's conditions read (`aws:ResourceTag/<key>`, any case).
pub fn resource_tag_keys(policy: &str) -> Vec<String> {
    let lower = policy.to_ascii_lowercase();
    let needle = "aws:resourcetag/";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(needle) {
        let start = from + i + needle.len();
        let end = policy[start..]
            .find(|c: char| c == '"' || c.is_whitespace())
            .map_or(policy.len(), |e| start + e);
        if end > start && !out.iter().any(|k: &String| k == &policy[start..end]) {
            out.push(policy[start..end].to_owned());
        }
        from = end.max(start);
    }
    out
}

fn list_udf(name: &'static str, f: fn(&str) -> Vec<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let (arr, scalar) = utf8_arg(args, name)?;
            let s = arr.as_string::<i32>();
            let mut list = ListBuilder::new(StringBuilder::new());
            for v in s.iter() {
                for k in v.map(f).unwrap_or_default() {
                    list.values().append_value(k);
                }
                list.append(v.is_some());
            }
            output(Arc::new(list.finish()), scalar)
        }),
    )
}

fn json_get_udf() -> ScalarUDF {
    create_udf(
        "json_get",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let [json, path] = arrays.as_slice() else {
                return Err(DataFusionError::Plan("json_get takes (json, path)".into()));
            };
            let json = arrow::compute::cast(json, &DataType::Utf8)?;
            let path = arrow::compute::cast(path, &DataType::Utf8)?;
            let (json, path) = (json.as_string::<i32>(), path.as_string::<i32>());
            let out: StringArray = json
                .iter()
                .zip(path.iter())
                .map(|(j, p)| json_get(j?, p?))
                .collect();
            output(Arc::new(out), scalar)
        }),
    )
}

fn kms_time_udf() -> ScalarUDF {
    create_udf(
        "kms_time",
        vec![DataType::Utf8],
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let (arr, scalar) = utf8_arg(args, "kms_time")?;
            let s = arr.as_string::<i32>();
            let out = s
                .iter()
                .map(|v| v.and_then(kms_time))
                .collect::<arrow::array::TimestampMicrosecondArray>()
                .with_timezone("UTC");
            output(Arc::new(out), scalar)
        }),
    )
}

/// Registers kms-audit's SQL functions on a session.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(json_get_udf());
    ctx.register_udf(kms_time_udf());
    ctx.register_udf(list_udf("tag_keys", tag_keys));
    ctx.register_udf(list_udf("resource_tag_keys", resource_tag_keys));
    ctx.register_udf(is_private_ip_udf());
    ctx.register_udf(string_udf("arn_account", |arn| {
        crate::ingest::record::arn_account(arn).map(str::to_owned)
    }));
    ctx.register_udf(string_udf("ip_network", policy::ip_network));
    ctx.register_udf(policy_findings_udf());
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn request_helpers() {
        let rp = r#"{"keyId":"k","validTo":"Jan 1, 2021 8:00:00 PM","expirationModel":"KEY_MATERIAL_EXPIRES","n":{"a":[1]}}"#;
        assert_eq!(
            json_get(rp, "expirationModel").as_deref(),
            Some("KEY_MATERIAL_EXPIRES")
        );
        assert_eq!(json_get(rp, "n.a").as_deref(), Some("[1]"));
        assert_eq!(json_get(rp, "missing"), None);
        assert_eq!(json_get("not json", "a"), None);
        assert_eq!(
            kms_time("Jan 1, 2021 8:00:00 PM")
                .map(crate::time::format_micros)
                .as_deref(),
            Some("2021-01-01T20:00:00Z")
        );
        assert_eq!(
            kms_time("2026-11-01T00:00:00Z"),
            crate::time::parse_event_time("2026-11-01T00:00:00Z")
        );
        assert_eq!(kms_time("soon"), None);
        assert_eq!(
            tag_keys(
                r#"{"keyId":"k","tags":[{"tagKey":"Department","tagValue":"IT"},{"tagKey":"env","tagValue":"p"}]}"#
            ),
            ["Department", "env"]
        );
        assert_eq!(
            tag_keys(r#"{"keyId":"k","tagKeys":["Project"]}"#),
            ["Project"]
        );
        assert_eq!(
            resource_tag_keys(
                r#"{"Condition":{"StringEquals":{"aws:ResourceTag/Project":"x","AWS:RESOURCETAG/env":"p"}}}"#
            ),
            ["Project", "env"]
        );
    }
}
