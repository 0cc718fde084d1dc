//! How household and member register fields read in the console: their Chinese labels,
//! their values in words (codes as 中文 labels, booleans as 是/否), and how a value the
//! reviewer typed becomes the JSON a register write carries. Pure functions, so the
//! conflict screen and its tests share one vocabulary.

use fieldsync_model::codes::{
    CodeList, Disability, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    PovertyCause, Relation, Schooling, Sex,
};
use serde_json::Value;

use crate::error::ServiceError;

/// The Chinese label of a register field (household or member), or the field name itself
/// for a field this build does not know.
pub fn field_label_zh(field: &str) -> &str {
    match field {
        "head_name" => "户主姓名",
        "phone" => "联系电话",
        "address" => "家庭住址",
        "attribute" => "户属性",
        "main_cause" => "主要致贫原因",
        "secondary_causes" => "次要致贫原因",
        "housing_danger_level" => "住房安全等级",
        "location" => "农户位置",
        "name" => "姓名",
        "relation" => "与户主关系",
        "sex" => "性别",
        "birth_date" => "出生日期",
        "id_number" => "身份证号",
        "health" => "健康状况",
        "labour_capacity" => "劳动技能",
        "schooling" => "在校生情况",
        "disability" => "残疾类别",
        "disability_grade" => "残疾等级",
        "has_medical_insurance" => "参加基本医疗保险",
        "has_serious_illness_insurance" => "参加大病保险",
        "has_pension_insurance" => "参加养老保险",
        "removed" => "已移出家庭",
        other => other,
    }
}

/// How a field's values are written.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Flag,
    Number,
    Location,
    /// One code of a list: its labels and a label → code lookup.
    Code(fn(i32) -> Option<&'static str>, fn(&str) -> Option<i32>),
    /// A list of codes.
    Codes(fn(i32) -> Option<&'static str>, fn(&str) -> Option<i32>),
}

fn label_of<T: CodeList>(code: i32) -> Option<&'static str> {
    T::from_code(code).map(CodeList::label_zh)
}

fn code_of<T: CodeList>(label: &str) -> Option<i32> {
    T::from_label_zh(label).map(CodeList::code)
}

fn kind(field: &str) -> Kind {
    match field {
        "attribute" => Kind::Code(
            label_of::<HouseholdAttribute>,
            code_of::<HouseholdAttribute>,
        ),
        "main_cause" => Kind::Code(label_of::<PovertyCause>, code_of::<PovertyCause>),
        "secondary_causes" => Kind::Codes(label_of::<PovertyCause>, code_of::<PovertyCause>),
        "housing_danger_level" => Kind::Code(
            label_of::<HousingDangerLevel>,
            code_of::<HousingDangerLevel>,
        ),
        "relation" => Kind::Code(label_of::<Relation>, code_of::<Relation>),
        "sex" => Kind::Code(label_of::<Sex>, code_of::<Sex>),
        "health" => Kind::Code(label_of::<Health>, code_of::<Health>),
        "labour_capacity" => Kind::Code(label_of::<LabourCapacity>, code_of::<LabourCapacity>),
        "schooling" => Kind::Code(label_of::<Schooling>, code_of::<Schooling>),
        "disability" => Kind::Code(label_of::<Disability>, code_of::<Disability>),
        "disability_grade" => Kind::Number,
        "location" => Kind::Location,
        "has_medical_insurance"
        | "has_serious_illness_insurance"
        | "has_pension_insurance"
        | "removed" => Kind::Flag,
        _ => Kind::Text,
    }
}

fn code_label(value: &Value, label: fn(i32) -> Option<&'static str>) -> String {
    value
        .as_i64()
        .and_then(|code| i32::try_from(code).ok())
        .and_then(label)
        .map_or_else(|| format!("未知代码 {value}"), str::to_owned)
}

/// A register value in words a supervisor reads: `（空）` for null, labels for codes.
pub fn value_zh(field: &str, value: &Value) -> String {
    if value.is_null() {
        return "（空）".to_owned();
    }
    match kind(field) {
        Kind::Text => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
        Kind::Flag => match value.as_bool() {
            Some(true) => "是".to_owned(),
            Some(false) => "否".to_owned(),
            None => value.to_string(),
        },
        Kind::Number if field == "disability_grade" => match value.as_u64() {
            Some(0) => "无".to_owned(),
            Some(grade) => format!("{grade} 级"),
            None => value.to_string(),
        },
        Kind::Number => value.to_string(),
        Kind::Location => match (
            value.get("lat").and_then(Value::as_f64),
            value.get("lon").and_then(Value::as_f64),
        ) {
            (Some(lat), Some(lon)) => format!("纬度 {lat:.6}，经度 {lon:.6}"),
            _ => value.to_string(),
        },
        Kind::Code(label, _) => code_label(value, label),
        Kind::Codes(label, _) => match value.as_array() {
            Some(items) if items.is_empty() => "（无）".to_owned(),
            Some(items) => items
                .iter()
                .map(|item| code_label(item, label))
                .collect::<Vec<_>>()
                .join("、"),
            None => value.to_string(),
        },
    }
}

/// A code typed by number or by its Chinese label.
fn typed_code(text: &str, lookup: fn(&str) -> Option<i32>) -> Option<i32> {
    text.parse::<i32>().ok().or_else(|| lookup(text))
}

/// The JSON value for what a reviewer typed into the "other value" box: text as is, codes
/// by number or label (several separated by 、 or commas), 是/否 for yes/no, a number, or
/// `lat,lon` for a location. The register's own rules check the result afterwards.
pub fn typed_value(field: &str, text: &str) -> Result<Value, ServiceError> {
    let text = text.trim();
    let refuse = |what: &str| ServiceError::invalid("custom_value", what.to_owned());
    match kind(field) {
        Kind::Text => Ok(Value::String(text.to_owned())),
        _ if text.is_empty() => Ok(Value::Null),
        Kind::Flag => match text {
            "是" | "true" | "1" => Ok(Value::Bool(true)),
            "否" | "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(refuse("请填写“是”或“否”")),
        },
        Kind::Number => text
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| refuse("请填写数字")),
        Kind::Location => {
            let parts: Vec<f64> = text
                .split([',', '，'])
                .map(|part| part.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| refuse("请按“纬度,经度”填写"))?;
            match parts.as_slice() {
                [lat, lon] => Ok(serde_json::json!({ "lat": lat, "lon": lon })),
                _ => Err(refuse("请按“纬度,经度”填写")),
            }
        }
        Kind::Code(_, lookup) => typed_code(text, lookup)
            .map(Value::from)
            .ok_or_else(|| refuse("不是有效的选项（可填代码或中文名称）")),
        Kind::Codes(_, lookup) => text
            .split(['、', ',', '，'])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| typed_code(part, lookup).map(Value::from))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array)
            .ok_or_else(|| refuse("含有无效的选项（可填代码或中文名称）")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_have_chinese_labels() {
        assert_eq!(field_label_zh("phone"), "联系电话");
        assert_eq!(field_label_zh("health"), "健康状况");
        assert_eq!(field_label_zh("unknown_field"), "unknown_field");
        for field in fieldsync_model::register::HOUSEHOLD_FIELDS
            .iter()
            .chain(fieldsync_model::register::MEMBER_FIELDS)
        {
            assert_ne!(field_label_zh(field), *field, "{field} has no label");
        }
    }

    #[test]
    fn values_read_as_words() {
        let healthy = Health::ALL[0];
        assert_eq!(
            value_zh("health", &json!(healthy.code())),
            healthy.label_zh()
        );
        assert_eq!(value_zh("phone", &json!("13800000000")), "13800000000");
        assert_eq!(value_zh("removed", &json!(true)), "是");
        assert_eq!(value_zh("housing_danger_level", &Value::Null), "（空）");
        assert!(value_zh("health", &json!(99_999)).contains("未知代码"));
        let causes = PovertyCause::ALL;
        assert_eq!(
            value_zh(
                "secondary_causes",
                &json!([causes[0].code(), causes[1].code()])
            ),
            format!("{}、{}", causes[0].label_zh(), causes[1].label_zh())
        );
    }

    #[test]
    fn typed_values_accept_codes_labels_and_words() {
        let sick = Health::ALL[1];
        assert_eq!(
            typed_value("health", sick.label_zh()).expect("label"),
            json!(sick.code())
        );
        assert_eq!(
            typed_value("health", &sick.code().to_string()).expect("code"),
            json!(sick.code())
        );
        assert!(typed_value("health", "很好").is_err());
        assert_eq!(typed_value("phone", " 139 ").expect("text"), json!("139"));
        assert_eq!(typed_value("removed", "是").expect("flag"), json!(true));
        assert_eq!(
            typed_value("location", "30.1，110.2").expect("point"),
            json!({"lat": 30.1, "lon": 110.2})
        );
        assert_eq!(
            typed_value("housing_danger_level", "").expect("clear"),
            Value::Null
        );
    }
}
