//! `coded_enum!`: the closed, numbered enums of the protocol (`Action`,
//! `Reason`). Each variant's code is its declaration index, which is also
//! how postcard encodes it, so one listing gives the enum, its wire code,
//! the list of every variant and the names the specification uses.

/// Declares a `#[repr(u8)]` enum whose codes equal the declaration index,
/// with `ALL`, `code`, `from_code` and `name`.
macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $( $(#[$doc:meta])* $variant:ident = $code:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(u8)]
        pub enum $enum {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl $enum {
            /// Every variant, in code order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant,)*];

            /// The wire code (the variant index).
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The variant with this wire code, if there is one.
            pub fn from_code(code: u8) -> Option<$enum> {
                match code {
                    $( $code => Some($enum::$variant), )*
                    _ => None,
                }
            }

            /// The variant's name, as `SPEC.md` and the logs write it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $enum::$variant => stringify!($variant), )*
                }
            }
        }
    };
}

pub(crate) use coded_enum;
