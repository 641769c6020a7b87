//! Resource IDs: 64-bit integers that travel in JSON as decimal strings.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The ID of a module, record, page, chart, workflow or job.
///
/// Written as a decimal string (`"42"`); read from a string or a number.
/// Postgres stores IDs as `BIGINT`, so anything above `i64::MAX` cannot name
/// a row and is rejected as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub i64);

impl Id {
    /// The "no parent" / "no module" ID, `"0"`.
    pub const ZERO: Id = Id(0);

    /// Parses a decimal ID (digits only, as the API document's `ID` pattern
    /// says), explaining what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Id, String> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not an ID (expected a decimal number)"));
        }
        text.parse::<i64>()
            .map(Id)
            .map_err(|_| format!("{text:?} is out of range for an ID"))
    }

    /// The value for binding in SQL.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `None` for [`Id::ZERO`], the way optional references are stored.
    pub fn non_zero(self) -> Option<Id> {
        (self.0 != 0).then_some(self)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for Id {
    fn from(value: i64) -> Self {
        Id(value)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ID as a decimal string or a non-negative integer")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::parse(v).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id)
                    .map_err(|_| E::custom(format!("{v} is out of range for an ID")))
            }

            /// `42.0` is the integer 42 to JSON (and to JSON Schema, which
            /// the API document is written in).
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
                if v.fract() != 0.0 || v < 0.0 {
                    return Err(E::custom(format!("{v} is not an ID")));
                }
                // i64::MAX as f64 rounds up to 2^63, itself out of range.
                if v >= i64::MAX as f64 {
                    return Err(E::custom(format!("{v} is out of range for an ID")));
                }
                Ok(Id(v as i64))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "{v} is not an ID (IDs are not negative)"
                    )));
                }
                Ok(Id(v))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// Postgres bindings (`BIGINT`), for the store: only with feature `sqlx`.
#[cfg(feature = "sqlx")]
mod sqlx_bindings {
    use super::Id;

    impl sqlx::Type<sqlx::Postgres> for Id {
        fn type_info() -> sqlx::postgres::PgTypeInfo {
            <i64 as sqlx::Type<sqlx::Postgres>>::type_info()
        }
    }

    impl sqlx::postgres::PgHasArrayType for Id {
        fn array_type_info() -> sqlx::postgres::PgTypeInfo {
            <i64 as sqlx::postgres::PgHasArrayType>::array_type_info()
        }
    }

    impl<'q> sqlx::Encode<'q, sqlx::Postgres> for Id {
        fn encode_by_ref(
            &self,
            buf: &mut sqlx::postgres::PgArgumentBuffer,
        ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            <i64 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0, buf)
        }
    }

    impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Id {
        fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
            <i64 as sqlx::Decode<sqlx::Postgres>>::decode(value).map(Id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_strings_and_read_from_strings_or_numbers() {
        assert_eq!(serde_json::to_string(&Id(42)).unwrap(), "\"42\"");
        assert_eq!(serde_json::from_str::<Id>("\"42\"").unwrap(), Id(42));
        assert_eq!(serde_json::from_str::<Id>("42").unwrap(), Id(42));
        assert_eq!(serde_json::from_str::<Id>("42.0").unwrap(), Id(42));
        assert_eq!(serde_json::from_str::<Id>("1e3").unwrap(), Id(1000));
        assert!(serde_json::from_str::<Id>("42.5").is_err());
        assert!(serde_json::from_str::<Id>("-1.0").is_err());
        assert!(serde_json::from_str::<Id>("9.3e18").is_err());
    }

    #[test]
    fn bad_ids_are_rejected_with_a_reason() {
        assert!(serde_json::from_str::<Id>("\"abc\"")
            .unwrap_err()
            .to_string()
            .contains("not an ID"));
        assert!(serde_json::from_str::<Id>("-1").is_err());
        assert!(serde_json::from_str::<Id>("18446744073709551615").is_err());
        assert!(Id::parse("99999999999999999999")
            .unwrap_err()
            .contains("out of range"));
        assert!(Id::parse("").is_err());
        assert!(Id::parse(" 42").is_err(), "digits only, as documented");
        assert_eq!(Id::parse("0042"), Ok(Id(42)));
        assert_eq!(Id::parse("9223372036854775807"), Ok(Id(i64::MAX)));
    }
}
