//! SQL functions for the lake (registered on every [`crate::sql::new_context`]):
//!
//! | function | returns |
//! |---|---|
//! | `is_private_ip(source_ip)` | true for RFC 1918, loopback, link-local, CGNAT and IPv6 ULA/link-local addresses; false for public IPs, service names and "AWS Internal" |
//! | `arn_account(arn)` | the account id in any ARN, else null |
//! | `ip_network(source_ip)` | the /24 (IPv4) or /48 (IPv6) network of an address, else null |
//! | `policy_findings(key_policy)` | a list of `{kind, sid, value}` structs (see [`crate::sql::policy`]); null for invalid JSON |

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
                let findings = v.and_then(|p| policy::analyze(p).ok());
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

/// Registers kms-audit's SQL functions on a session.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(is_private_ip_udf());
    ctx.register_udf(string_udf("arn_account", |arn| {
        crate::ingest::record::arn_account(arn).map(str::to_owned)
    }));
    ctx.register_udf(string_udf("ip_network", policy::ip_network));
    ctx.register_udf(policy_findings_udf());
}
