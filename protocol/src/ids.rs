//! Opaque identifiers. Server-made ids are lowercase alphanumerics with a one-letter kind
//! prefix (`u…`, `d…`, `c…`, `m…`), which keeps them safe as MQTT topic levels.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                if is_id(&s) {
                    Ok(Self(s))
                } else {
                    Err(format!("invalid {}: expected 1-64 characters of [A-Za-z0-9_-]", stringify!($name)))
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl $name {
            /// Accepts an id only if it can stand as one MQTT topic level.
            pub fn parse(s: &str) -> Option<Self> {
                is_id(s).then(|| Self(s.to_owned()))
            }

            /// Wraps a value that is already known to be valid (read back from the database).
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
                    .description(Some(concat!(stringify!($name), ": 1-64 characters of [A-Za-z0-9_-]")))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// One device of a user; also its MQTT client id and username.
    DeviceId
);
id_type!(
    /// A direct or group conversation.
    ConvId
);
id_type!(
    /// A stored message.
    MsgId
);
id_type!(
    /// An uploaded file (each upload gets its own, even when its bytes are stored once).
    FileId
);

/// 1–64 characters of `[A-Za-z0-9_-]`: no MQTT wildcard, separator or `$`.
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_topic_syntax() {
        assert!(UserId::parse("u1a2b").is_some());
        for bad in ["", "a/b", "+", "#", "$SYS", "a b", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
